/**
 * The listener status check of seed 003: is the stage server up, is the
 * listener enabled here, do the seed's trigger functions and triggers exist
 * and are they enabled, is a `job_state_listener` connection present; and,
 * optionally, a real test update that must come back as a notification.
 */
import pg from 'pg';
import { request } from 'undici';

export interface Check {
  name: string;
  ok: boolean;
  /** What is wrong (failed checks) or a short detail (passed checks). */
  detail: string;
  /** How to fix it (failed checks). */
  fix?: string;
}

export const LISTENER_APPLICATION_NAME = 'job_state_listener';
export const VARIANT_CHANNEL = 'job_variant_state_changed';
export const JOB_CHANNEL = 'job_state_changed';
export const STATUS_CHECK_TENANT = 'pipeline_status_check';

export const TRIGGERS = [
  { fn: 'notify_job_variant_state_change', trigger: 'job_variant_state_change_trigger', table: 'jobs_variants' },
  { fn: 'notify_job_state_change', trigger: 'job_state_change_trigger', table: 'jobs' },
] as const;

export function formatCheck(c: Check): string {
  if (c.ok) return `OK   ${c.name}${c.detail ? ` (${c.detail})` : ''}`;
  return `FAIL ${c.name}: ${c.detail}${c.fix ? ` -> ${c.fix}` : ''}`;
}

/** ENABLE_JOB_STATE_LISTENER as the plugin reads it: unset means true. */
export function listenerEnabledCheck(env: NodeJS.ProcessEnv): Check {
  const name = 'listener enabled in this environment (ENABLE_JOB_STATE_LISTENER)';
  const raw = env.ENABLE_JOB_STATE_LISTENER;
  if (raw === undefined || raw.trim() === '') return { name, ok: true, detail: 'unset, default true' };
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return { name, ok: true, detail: `=${raw}` };
  if (['false', '0', 'no', 'off'].includes(v)) {
    return {
      name,
      ok: false,
      detail: `ENABLE_JOB_STATE_LISTENER=${raw}: nothing is triggered automatically`,
      fix: 'set ENABLE_JOB_STATE_LISTENER=true for the server hosting the listener and restart it',
    };
  }
  return {
    name,
    ok: false,
    detail: `ENABLE_JOB_STATE_LISTENER=${raw} is not a boolean`,
    fix: 'set it to true or false',
  };
}

export async function stageServerCheck(baseUrl: string, timeoutMs = 3000): Promise<Check> {
  const url = `${baseUrl.replace(/\/+$/, '')}/healthz`;
  const name = `stage server ${url}`;
  const fix = 'start it (pnpm dev, or node apps/stage-api/dist/server.js) or point STAGE_API_URL at it';
  try {
    const res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      return { name, ok: false, detail: `answered ${res.statusCode}: ${text.slice(0, 200)}`, fix };
    }
    return { name, ok: true, detail: '200' };
  } catch (err) {
    const e = err as Error & { code?: string; cause?: { code?: string } };
    const reason = e.code ?? e.cause?.code ?? e.message;
    return { name, ok: false, detail: `not reachable (${reason})`, fix };
  }
}

export async function triggerChecks(db: Pick<pg.Pool, 'query'>): Promise<Check[]> {
  const out: Check[] = [];
  const fix = 'run feedly-pipeline migrate --reapply (re-creates the functions and triggers)';
  for (const t of TRIGGERS) {
    const f = await db.query('SELECT 1 FROM pg_proc WHERE proname = $1', [t.fn]);
    out.push(
      f.rowCount
        ? { name: `function ${t.fn}()`, ok: true, detail: 'exists' }
        : { name: `function ${t.fn}()`, ok: false, detail: 'missing', fix },
    );
  }
  for (const t of TRIGGERS) {
    const r = await db.query<{ tgenabled: string; fn: string }>(
      `SELECT tg.tgenabled, p.proname AS fn FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
        WHERE tg.tgname = $1 AND tg.tgrelid = to_regclass($2) AND NOT tg.tgisinternal`,
      [t.trigger, t.table],
    );
    const row = r.rows[0];
    const name = `trigger ${t.trigger} on ${t.table}`;
    if (!row) out.push({ name, ok: false, detail: 'missing', fix });
    else if (row.tgenabled === 'D') {
      out.push({ name, ok: false, detail: 'disabled', fix: `ALTER TABLE ${t.table} ENABLE TRIGGER ${t.trigger}` });
    } else if (row.fn !== t.fn) {
      out.push({ name, ok: false, detail: `calls ${row.fn}() instead of ${t.fn}()`, fix });
    } else out.push({ name, ok: true, detail: 'enabled' });
  }
  return out;
}

export async function listenerConnectionCheck(db: Pick<pg.Pool, 'query'>): Promise<Check> {
  const r = await db.query<{ n: number; clients: string | null }>(
    `SELECT count(*)::int AS n, string_agg(DISTINCT coalesce(host(client_addr), 'local'), ', ') AS clients
       FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
    [LISTENER_APPLICATION_NAME],
  );
  const row = r.rows[0] ?? { n: 0, clients: null };
  const name = `listener connection (application_name '${LISTENER_APPLICATION_NAME}' in pg_stat_activity)`;
  if (row.n > 0) return { name, ok: true, detail: `${row.n} connection(s) from ${row.clients}` };
  return {
    name,
    ok: false,
    detail: 'no listener is connected to this database',
    fix: 'start the stage server with the listener (pnpm dev) or register @feedlyai/listener-plugin in the API server with ENABLE_JOB_STATE_LISTENER=true',
  };
}

/**
 * The fire test: LISTEN on both channels on a dedicated connection, create a
 * test job (tenant pipeline_status_check) with one variant, change both rows'
 * state inside one transaction (committed, so NOTIFY is delivered), wait for
 * both notifications, then delete the test job. The states used
 * (user_img_input) are ones the pipeline never acts on.
 */
export async function fireTestCheck(url: string, timeoutMs = 5000): Promise<Check[]> {
  const listener = new pg.Client({ connectionString: url, application_name: 'feedly_status_fire_test' });
  const writer = new pg.Client({ connectionString: url, application_name: 'feedly_status_fire_test' });
  await listener.connect();
  await writer.connect();
  let jobId: string | null = null;
  const got = new Map<string, number>();
  try {
    const started = { t: 0 };
    listener.on('notification', (n) => {
      try {
        const payload = JSON.parse(n.payload ?? '{}') as { job_id?: string };
        if (payload.job_id && payload.job_id === jobId && !got.has(n.channel))
          got.set(n.channel, Date.now() - started.t);
      } catch {
        // Someone else's malformed payload: not ours, ignore.
      }
    });
    await listener.query(`LISTEN ${VARIANT_CHANNEL}`);
    await listener.query(`LISTEN ${JOB_CHANNEL}`);
    const j = await writer.query<{ job_id: string }>(
      `INSERT INTO jobs (tenant_id, current_step, status) VALUES ($1, 'user_img_input', 'queued') RETURNING job_id`,
      [STATUS_CHECK_TENANT],
    );
    jobId = (j.rows[0] as { job_id: string }).job_id;
    await writer.query(
      `INSERT INTO jobs_variants (job_id, creation_order, current_step, status) VALUES ($1, 1, 'user_img_input', 'queued')`,
      [jobId],
    );
    await writer.query('BEGIN');
    await writer.query(`UPDATE jobs_variants SET status = 'done' WHERE job_id = $1`, [jobId]);
    await writer.query(`UPDATE jobs SET status = 'running' WHERE job_id = $1`, [jobId]);
    started.t = Date.now();
    await writer.query('COMMIT');
    const deadline = Date.now() + timeoutMs;
    while (got.size < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    if (jobId) await writer.query('DELETE FROM jobs WHERE job_id = $1', [jobId]).catch(() => {});
    await listener.end().catch(() => {});
    await writer.end().catch(() => {});
  }
  return [VARIANT_CHANNEL, JOB_CHANNEL].map((ch) => {
    const ms = got.get(ch);
    const name = `fire test: notification on '${ch}'`;
    return ms !== undefined
      ? { name, ok: true, detail: `received ${ms} ms after commit` }
      : {
          name,
          ok: false,
          detail: `nothing received within ${timeoutMs} ms of a committed state change`,
          fix: 'check the trigger and function above (feedly-pipeline migrate --reapply re-creates them)',
        };
  });
}

export interface StatusOptions {
  databaseUrl: string;
  stageApiUrl: string;
  env: NodeJS.ProcessEnv;
  fireTest?: boolean;
  fireTestTimeoutMs?: number;
}

/** Every check, in order; the caller prints them and exits non-zero if any failed. */
export async function runStatusChecks(pool: Pick<pg.Pool, 'query'>, o: StatusOptions): Promise<Check[]> {
  const checks: Check[] = [];
  checks.push(await stageServerCheck(o.stageApiUrl));
  checks.push(listenerEnabledCheck(o.env));
  checks.push(...(await triggerChecks(pool)));
  checks.push(await listenerConnectionCheck(pool));
  if (o.fireTest) checks.push(...(await fireTestCheck(o.databaseUrl, o.fireTestTimeoutMs)));
  return checks;
}

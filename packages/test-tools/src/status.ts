/**
 * The listener status check of seed 003 (docs/cli.md, `status`): is the
 * stage server up, is a listener running (asked of the stage server's
 * /healthz, else of the database's instance registry: never read from this
 * command's own environment), do the seed's trigger functions and triggers
 * exist and are they enabled, is a `job_state_listener` connection present;
 * and, optionally, a real test update that must come back as a notification.
 */
import { JOB_CHANNEL, LISTENER_APPLICATION_NAME, NOTIFY_TRIGGERS, VARIANT_CHANNEL } from '@feedlyai/pipeline-core';
import pg from 'pg';
import { request } from 'undici';

export interface Check {
  name: string;
  ok: boolean;
  /** What is wrong (failed checks) or a short detail (passed checks). */
  detail: string;
  /** How to fix it (failed checks). */
  fix?: string;
  /** Where the answer came from, when it could come from more than one place. */
  source?: string;
}

// The names are pipeline-core's, next to the migration that creates the triggers (docs/notifications.md).
export { JOB_CHANNEL, LISTENER_APPLICATION_NAME, VARIANT_CHANNEL };
export const STATUS_CHECK_TENANT = 'pipeline_status_check';

/** The notify triggers and their functions, as migration 0001 creates them. */
export const TRIGGERS = NOTIFY_TRIGGERS;

export function formatCheck(c: Check): string {
  if (c.ok) return `OK   ${c.name}${c.detail ? ` (${c.detail})` : ''}`;
  return `FAIL ${c.name}: ${c.detail}${c.fix ? ` -> ${c.fix}` : ''}`;
}

/** What a stage server's /healthz says of the listener it hosts (apps/stage-api, routes/health.ts). */
export type HostedListener =
  | { hosted: false }
  | {
      hosted: true;
      enabled: boolean;
      connected: boolean;
      reconnects: number | null;
      instanceId: string | null;
    };

/** The `listener` member of a /healthz body; null when the body has none (another server, an older version). */
export function hostedListenerOf(health: unknown): HostedListener | null {
  const l = (health as { listener?: unknown } | null)?.listener as
    | { hosted?: unknown; status?: Record<string, unknown> }
    | undefined;
  if (!l || typeof l !== 'object' || typeof l.hosted !== 'boolean') return null;
  if (!l.hosted) return { hosted: false };
  const st = l.status;
  if (!st || typeof st !== 'object' || typeof st.enabled !== 'boolean') return null;
  return {
    hosted: true,
    enabled: st.enabled,
    connected: st.connected === true,
    reconnects: typeof st.reconnects === 'number' ? st.reconnects : null,
    instanceId: typeof st.instanceId === 'string' ? st.instanceId : null,
  };
}

export interface StageProbe {
  check: Check;
  /** The parsed /healthz body when the server answered with JSON (200 or 503), else null. */
  health: unknown;
}

/** GET /healthz of the stage server: the check, and the body for the listener check. */
export async function probeStageServer(baseUrl: string, timeoutMs = 3000): Promise<StageProbe> {
  const url = `${baseUrl.replace(/\/+$/, '')}/healthz`;
  const name = `stage server ${url}`;
  const fix = 'start it (pnpm dev, or node apps/stage-api/dist/server.js) or point STAGE_API_URL at it';
  try {
    const res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    let health: unknown = null;
    try {
      health = JSON.parse(text);
    } catch {
      health = null;
    }
    if (res.statusCode !== 200) {
      return { check: { name, ok: false, detail: `answered ${res.statusCode}: ${text.slice(0, 200)}`, fix }, health };
    }
    return { check: { name, ok: true, detail: '200' }, health };
  } catch (err) {
    const e = err as Error & { code?: string; cause?: { code?: string } };
    const reason = e.code ?? e.cause?.code ?? e.message;
    return { check: { name, ok: false, detail: `not reachable (${reason})`, fix }, health: null };
  }
}

export async function stageServerCheck(baseUrl: string, timeoutMs = 3000): Promise<Check> {
  return (await probeStageServer(baseUrl, timeoutMs)).check;
}

export interface RegisteredListener {
  instanceId: string;
  host: string | null;
  pid: number | null;
}

/**
 * Listener instances registered in `pipeline_instances` (docs/healing.md)
 * whose registered LISTEN connection is live in pg_stat_activity right now.
 */
export async function liveRegisteredListeners(db: Pick<pg.Pool, 'query'>): Promise<RegisteredListener[]> {
  const r = await db.query<{ instance_id: string; host: string | null; pid: number | null }>(
    `SELECT i.instance_id, i.host, i.pid
       FROM pipeline_instances i
       JOIN pg_stat_activity a
         ON a.pid = i.listener_pid AND a.application_name = $1 AND a.datname = current_database()
      ORDER BY i.instance_id`,
    [LISTENER_APPLICATION_NAME],
  );
  return r.rows.map((x) => ({ instanceId: x.instance_id, host: x.host, pid: x.pid }));
}

const LISTENER_CHECK = 'listener enabled';
const SOURCE_STAGE = 'stage server /healthz';
const SOURCE_DB = 'database (pipeline_instances with a live job_state_listener connection)';
const START_ONE =
  'start the stage server with the listener (pnpm dev), run feedly-pipeline listen, or register @feedlyai/listener-plugin in your API server with ENABLE_JOB_STATE_LISTENER=true';

function describeInstances(list: readonly RegisteredListener[]): string {
  const shown = list
    .slice(0, 5)
    .map((i) => `${i.instanceId}${i.host ? ` on ${i.host}` : ''}${i.pid ? ` pid ${i.pid}` : ''}`)
    .join(', ');
  return `${list.length} instance(s) registered with a live connection: ${shown}${list.length > 5 ? ', ...' : ''}`;
}

/**
 * Is a listener running? Asked of the running processes, never of this
 * command's environment: first the stage server's /healthz (the listener it
 * hosts, with that process's ENABLE_JOB_STATE_LISTENER), else the database
 * (a registered instance with a live `job_state_listener` connection: the
 * API server's plugin, `feedly-pipeline listen`). The check says which
 * source answered.
 *
 * `registry` is null when the database could not be asked (unreachable), or
 * 'not-migrated' when it has no instance registry.
 */
export function listenerCheck(
  stage: { url: string; reachable: boolean; health: unknown },
  registry: readonly RegisteredListener[] | 'not-migrated' | null,
): Check {
  const hosted = hostedListenerOf(stage.health);
  if (hosted?.hosted && hosted.enabled) {
    const id = hosted.instanceId ? ` (instance ${hosted.instanceId})` : '';
    if (hosted.connected) {
      return {
        name: LISTENER_CHECK,
        ok: true,
        detail: `hosted by the stage server at ${stage.url}, LISTEN connection up${id}; source: ${SOURCE_STAGE}`,
        source: SOURCE_STAGE,
      };
    }
    return {
      name: LISTENER_CHECK,
      ok: false,
      detail: `the stage server at ${stage.url} hosts an enabled listener whose LISTEN connection is down${hosted.reconnects !== null ? ` (${hosted.reconnects} reconnect(s) so far)` : ''}${id}; source: ${SOURCE_STAGE}`,
      fix: "look for 'listener error' and 'reconnect attempt' in the stage server's log (docs/logs.md) and check its database settings",
      source: SOURCE_STAGE,
    };
  }
  const stageSays =
    hosted?.hosted === true
      ? `the stage server at ${stage.url} runs with ENABLE_JOB_STATE_LISTENER=false`
      : hosted?.hosted === false
        ? `the stage server at ${stage.url} hosts no listener`
        : stage.reachable
          ? `the stage server at ${stage.url} does not report a listener`
          : `the stage server at ${stage.url} is not reachable`;
  if (registry === null) {
    return {
      name: LISTENER_CHECK,
      ok: false,
      detail: `cannot tell: ${stageSays}, and the database cannot be reached to look for registered instances`,
      fix: 'check DATABASE_URL / DB_* (or --database-url) and that PostgreSQL is running',
    };
  }
  if (registry === 'not-migrated') {
    return {
      name: LISTENER_CHECK,
      ok: false,
      detail: `${stageSays}, and the database has no instance registry (pipeline_instances): not migrated; source: ${SOURCE_DB}`,
      fix: 'run feedly-pipeline migrate, then start a listener',
      source: SOURCE_DB,
    };
  }
  if (registry.length > 0) {
    return {
      name: LISTENER_CHECK,
      ok: true,
      detail: `${describeInstances(registry)} (${stageSays}); source: ${SOURCE_DB}`,
      source: SOURCE_DB,
    };
  }
  return {
    name: LISTENER_CHECK,
    ok: false,
    detail: `${stageSays}, and no listener instance is registered with a live job_state_listener connection: nothing is triggered automatically; source: ${hosted?.hosted ? `${SOURCE_STAGE} and ${SOURCE_DB}` : SOURCE_DB}`,
    fix:
      hosted?.hosted === true
        ? 'set ENABLE_JOB_STATE_LISTENER=true for the stage server and restart it, or run feedly-pipeline listen'
        : START_ONE,
    source: hosted?.hosted ? `${SOURCE_STAGE} and ${SOURCE_DB}` : SOURCE_DB,
  };
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
  fireTest?: boolean;
  fireTestTimeoutMs?: number;
}

/** The instance registry, or 'not-migrated' when the database has none. */
export async function registryOf(db: Pick<pg.Pool, 'query'>): Promise<readonly RegisteredListener[] | 'not-migrated'> {
  try {
    return await liveRegisteredListeners(db);
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return 'not-migrated';
    throw err;
  }
}

/** Every check, in order; the caller prints them and exits non-zero if any failed. */
export async function runStatusChecks(pool: Pick<pg.Pool, 'query'>, o: StatusOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const stage = await probeStageServer(o.stageApiUrl);
  checks.push(stage.check);
  checks.push(
    listenerCheck(
      { url: o.stageApiUrl, reachable: stage.check.ok || stage.health !== null, health: stage.health },
      await registryOf(pool),
    ),
  );
  checks.push(...(await triggerChecks(pool)));
  checks.push(await listenerConnectionCheck(pool));
  if (o.fireTest) checks.push(...(await fireTestCheck(o.databaseUrl, o.fireTestTimeoutMs)));
  return checks;
}

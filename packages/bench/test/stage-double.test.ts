/**
 * The stage double of the chaos suite, on a real PostgreSQL (docs/chaos.md,
 * "The stage double"): the answers the engine acts on, the outage and the
 * credential rotation, the deadline header, the read-back after a lost
 * commit answer and after a real PostgreSQL restart.
 */
import { request } from 'node:http';
import { migrate, type Queryable, routeOf, type Step } from '@feedlyai/pipeline-core';
import { createTestDatabase, freePort, seedJob, waitFor } from '@feedlyai/test-helpers';
import pg from 'pg';
import t from 'tap';
import {
  DEFAULT_DEADLINE_MS,
  deadlineFromHeader,
  JOB_NOT_FOUND,
  type StageArrival,
  startStageDouble,
} from '../src/stage-double.js';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** One POST on a fresh connection (no keep-alive), so that a refused connection shows. */
function post(baseUrl: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const req = request(
      `${baseUrl}${path}`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(raw) as Record<string, unknown>;
          } catch {
            parsed = { raw };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

// A server of its own: a test below restarts PostgreSQL (docs/testing.md).
const db = await createTestDatabase({ migrate: (url) => migrate(url), ownServer: true });
t.teardown(() => db.close());

async function variantAt(step: Step, status = 'queued', attempt = 1) {
  const job = await seedJob(db.pool, { variants: 1, variantStep: step, variantStatus: status });
  const id = job.variantIds[0] as string;
  if (attempt !== 1)
    await db.pool.query('UPDATE jobs_variants SET attempt = $2 WHERE job_variants_id = $1', [id, attempt]);
  return {
    jobId: job.jobId,
    id,
    body: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id, attempt },
  };
}

async function rowOf(id: string) {
  const r = await db.pool.query<{ current_step: string; status: string; attempt: number }>(
    'SELECT current_step, status, attempt FROM jobs_variants WHERE job_variants_id = $1',
    [id],
  );
  return r.rows[0];
}

t.test('deadlineFromHeader: a positive integer, else the 30 s default', async (t) => {
  t.equal(deadlineFromHeader('1500'), 1500);
  t.equal(deadlineFromHeader(' 250 '), 250);
  for (const bad of [undefined, '', 'abc', '-5', '0', '1.5', '1e3', ['100', '200'], '99999999999']) {
    t.equal(deadlineFromHeader(bad), DEFAULT_DEADLINE_MS, `${JSON.stringify(bad)} -> default`);
  }
});

t.test('a 2xx answer moves the row to done; the arrival carries the header deadline', async (t) => {
  const arrivals: StageArrival[] = [];
  const double = await startStageDouble({ connectionString: db.url, onArrival: (a) => arrivals.push(a) });
  t.teardown(() => double.close());
  const v = await variantAt('vlm_analyze');
  const a = await post(double.url, routeOf('vlm_analyze'), v.body, { 'x-pipeline-timeout-ms': '4321' });
  t.equal(a.status, 200);
  t.match(await rowOf(v.id), { current_step: 'vlm_analyze', status: 'done', attempt: 1 });
  const b = await variantAt('vlm_analyze');
  await post(double.url, routeOf('vlm_analyze'), b.body, { 'x-pipeline-timeout-ms': 'soon' });
  await post(double.url, routeOf('vlm_analyze'), (await variantAt('vlm_analyze')).body);
  t.same(
    arrivals.map((x) => x.timeoutMs),
    [4321, DEFAULT_DEADLINE_MS, DEFAULT_DEADLINE_MS],
    'valid header used; malformed or missing: 30 s',
  );
  t.match(double.pairCounts().get(`${v.id}|vlm_analyze`), { ok: 1, conflict: 0 });
});

t.test('at most one recorded 500 per (subject, step), even at failure rate 1', async (t) => {
  const double = await startStageDouble({ connectionString: db.url, failureRate: 1 });
  t.teardown(() => double.close());
  const v = await variantAt('yolo_detect');
  const first = await post(double.url, routeOf('yolo_detect'), v.body);
  t.equal(first.status, 500, 'first attempt: injected failure');
  t.match(await rowOf(v.id), { status: 'failed', attempt: 1 }, 'recorded as failed before the 500');
  // The engine's retry: (step,'failed') -> (step,'queued'), attempt + 1.
  await db.pool.query("UPDATE jobs_variants SET status = 'queued', attempt = 2 WHERE job_variants_id = $1", [v.id]);
  const second = await post(double.url, routeOf('yolo_detect'), { ...v.body, attempt: 2 });
  t.equal(second.status, 200, 'the second attempt of the same pair is not failed again');
  t.match(await rowOf(v.id), { status: 'done', attempt: 2 });
  const key = `${v.id}|yolo_detect`;
  t.ok(double.injectedPairs().has(key), 'the pair is remembered as injected');
  t.match(double.pairCounts().get(key), { recorded500: 1, ok: 1, conflict: 0 });
  const other = await variantAt('yolo_detect');
  t.equal((await post(double.url, routeOf('yolo_detect'), other.body)).status, 500, 'another pair gets its own one');
});

t.test(
  '404 for an unknown job or a foreign tenant carries code job_not_found; an unknown route does not',
  async (t) => {
    const double = await startStageDouble({ connectionString: db.url });
    t.teardown(() => double.close());
    const v = await variantAt('planner');
    const unknown = await post(double.url, routeOf('planner'), {
      ...v.body,
      job_id: '00000000-0000-4000-8000-000000000000',
    });
    t.equal(unknown.status, 404);
    t.equal(unknown.body.code, JOB_NOT_FOUND);
    const foreign = await post(double.url, routeOf('planner'), { ...v.body, tenant_id: 'someone_else' });
    t.equal(foreign.status, 404);
    t.equal(foreign.body.code, JOB_NOT_FOUND);
    const gone = await post(double.url, routeOf('planner'), {
      ...v.body,
      job_variants_id: '00000000-0000-4000-8000-000000000001',
    });
    t.equal(gone.status, 404, 'an unknown variant of a known job');
    t.equal(gone.body.code, JOB_NOT_FOUND);
    const route = await post(double.url, '/api/yh/nothing', v.body);
    t.equal(route.status, 404);
    t.equal(route.body.code, undefined, 'a wrong URL is a service failure, not a job that does not exist');
    t.match(await rowOf(v.id), { current_step: 'planner', status: 'queued' }, 'nothing was recorded');
    const bad = await post(double.url, routeOf('planner'), { job_id: 'x' });
    t.equal(bad.status, 400, 'a bad body is a 400 with its reason');
    t.match(bad.body.error, /job_id/);
  },
);

t.test('409: a wrong attempt, and the same attempt while it is being handled', async (t) => {
  const double = await startStageDouble({ connectionString: db.url, latencyMs: [400, 400] });
  t.teardown(() => double.close());
  const v = await variantAt('overlay', 'queued', 2);
  const stale = await post(double.url, routeOf('overlay'), { ...v.body, attempt: 1 });
  t.equal(stale.status, 409, 'an older attempt is fenced');
  const first = post(double.url, routeOf('overlay'), v.body);
  await waitFor(() => double.inFlight() === 1, { message: 'first request inside' });
  const again = await post(double.url, routeOf('overlay'), v.body);
  t.equal(again.status, 409, 'the same attempt again, while the first is inside: 409 at once');
  t.equal((await first).status, 200, 'the first one finishes normally');
  t.match(double.pairCounts().get(`${v.id}|overlay`), { ok: 1, conflict: 2 });
});

t.test('429 + Retry-After when the admission limit is full; nothing recorded', async (t) => {
  const double = await startStageDouble({ connectionString: db.url, latencyMs: [400, 400], maxInFlight: 1 });
  t.teardown(() => double.close());
  const a = await variantAt('vlm_judge');
  const b = await variantAt('vlm_judge');
  const first = post(double.url, routeOf('vlm_judge'), a.body);
  await waitFor(() => double.inFlight() === 1, { message: 'first request inside' });
  const busy = await post(double.url, routeOf('vlm_judge'), b.body);
  t.equal(busy.status, 429);
  t.equal((await first).status, 200);
  t.match(await rowOf(b.id), { status: 'queued' }, 'the busy one is still queued');
  t.match(double.pairCounts().get(`${b.id}|vlm_judge`), { busy: 1, ok: 0 });
});

t.test('outage: refused while down, requests inside finish, the same port after', async (t) => {
  const double = await startStageDouble({ connectionString: db.url, latencyMs: [500, 500] });
  t.teardown(() => double.close());
  const inside = await variantAt('ocr_eval');
  const during = await variantAt('ocr_eval');
  const first = post(double.url, routeOf('ocr_eval'), inside.body);
  await waitFor(() => double.inFlight() === 1, { message: 'request inside before the outage' });
  // The outage's length is the parameter under test here: 1.5 s.
  const outage = double.down(1_500);
  t.equal(double.server, null, 'not listening');
  const refused = await post(double.url, routeOf('ocr_eval'), during.body).then(
    () => null,
    (err: NodeJS.ErrnoException) => err.code,
  );
  t.equal(refused, 'ECONNREFUSED', 'a new connection is refused while down');
  t.equal((await first).status, 200, 'the request inside finished normally');
  const { downAt, upAt } = await outage;
  t.ok(upAt - downAt >= 1_400, 'down for the time asked');
  t.equal(new URL(double.url).port, String(double.port), 'same URL');
  t.ok(double.server?.listening, 'listening again');
  const after = await post(double.url, routeOf('ocr_eval'), during.body);
  t.equal(after.status, 200, 'answered on the same port after the outage');
  t.match(await rowOf(during.id), { status: 'done', attempt: 1 });
});

t.test('rotation: every stage request answered 401 for the window, nothing recorded; then accepted', async (t) => {
  const double = await startStageDouble({ connectionString: db.url });
  t.teardown(() => double.close());
  const v = await variantAt('readability_eval');
  // The window's length is the parameter under test here: 1 s.
  const rotation = double.rejectAuth(1_000);
  const denied = await post(double.url, routeOf('readability_eval'), v.body);
  t.equal(denied.status, 401);
  t.match(await rowOf(v.id), { status: 'queued', attempt: 1 }, 'nothing was done');
  await rotation;
  const ok = await post(double.url, routeOf('readability_eval'), v.body);
  t.equal(ok.status, 200, 'accepted after the window');
  t.match(double.pairCounts().get(`${v.id}|readability_eval`), { unauthorized: 1, ok: 1 });
});

t.test('no database until the deadline: 503 at the deadline, nothing recorded', async (t) => {
  const port = await freePort();
  const double = await startStageDouble({
    connectionString: `postgres://postgres:postgres@127.0.0.1:${port}/none`,
    retryIntervalMs: 50,
  });
  t.teardown(() => double.close());
  const started = Date.now();
  const a = await post(
    double.url,
    routeOf('iou_eval'),
    {
      job_id: '00000000-0000-4000-8000-000000000002',
      tenant_id: 't',
      job_variants_id: '00000000-0000-4000-8000-000000000003',
      attempt: 1,
    },
    { 'x-pipeline-timeout-ms': '600' },
  );
  const took = Date.now() - started;
  t.equal(a.status, 503);
  t.ok(took >= 400 && took < DEFAULT_DEADLINE_MS / 2, `answered at the header's deadline (${took} ms)`);
});

/** A Queryable whose first statement matching `pattern` runs on the real database, then loses its reply. */
function losingReply(pool: pg.Pool, pattern: RegExp): { db: Queryable; lost: () => number } {
  let lost = 0;
  const db = {
    query: async (text: string, values?: unknown[]) => {
      const r = await pool.query(text, values);
      if (lost === 0 && pattern.test(text)) {
        lost++;
        throw new Error('Connection terminated unexpectedly');
      }
      return r;
    },
  } as unknown as Queryable;
  return { db, lost: () => lost };
}

t.test('a start whose commit answer was lost: the read-back finds our token, no second start', async (t) => {
  let wrap: ReturnType<typeof losingReply> | undefined;
  const double = await startStageDouble({
    connectionString: db.url,
    retryIntervalMs: 50,
    wrapDb: (pool) => {
      wrap = losingReply(pool, /start_token = \$6/);
      return wrap.db;
    },
  });
  t.teardown(() => double.close());
  const v = await variantAt('vlm_analyze', 'queued', 3);
  const a = await post(double.url, routeOf('vlm_analyze'), v.body);
  t.equal(wrap?.lost(), 1, 'the start ran and its reply was lost');
  t.equal(a.status, 200, 'went on with its own start');
  t.match(await rowOf(v.id), { status: 'done', attempt: 3 });
});

t.test('a finish whose commit answer was lost: the read-back finds it done', async (t) => {
  let wrap: ReturnType<typeof losingReply> | undefined;
  const double = await startStageDouble({
    connectionString: db.url,
    retryIntervalMs: 50,
    wrapDb: (pool) => {
      wrap = losingReply(pool, /SET status = 'done'/);
      return wrap.db;
    },
  });
  t.teardown(() => double.close());
  const v = await variantAt('planner');
  const a = await post(double.url, routeOf('planner'), v.body);
  t.equal(wrap?.lost(), 1, 'the finish ran and its reply was lost');
  t.equal(a.status, 200);
  t.match(await rowOf(v.id), { status: 'done', attempt: 1 });
  t.match(double.pairCounts().get(`${v.id}|planner`), { ok: 1, conflict: 0, unavailable: 0 });
});

t.test('an injected failure whose commit answer was lost: read back as recorded, answered 500', async (t) => {
  let wrap: ReturnType<typeof losingReply> | undefined;
  const double = await startStageDouble({
    connectionString: db.url,
    failureRate: 1,
    retryIntervalMs: 50,
    wrapDb: (pool) => {
      wrap = losingReply(pool, /SET status = 'failed'/);
      return wrap.db;
    },
  });
  t.teardown(() => double.close());
  const v = await variantAt('vlm_judge');
  const a = await post(double.url, routeOf('vlm_judge'), v.body);
  t.equal(wrap?.lost(), 1, 'the failure was written and its reply was lost');
  t.equal(a.status, 500);
  t.match(await rowOf(v.id), { status: 'failed', attempt: 1 });
  t.ok(double.injectedPairs().has(`${v.id}|vlm_judge`), "counted as the pair's one injected failure");
  t.match(double.pairCounts().get(`${v.id}|vlm_judge`), { recorded500: 1, conflict: 0 });
});

t.test('PostgreSQL restarted while the start waits: read back, started once, 200', async (t) => {
  const double = await startStageDouble({ connectionString: db.url, retryIntervalMs: 100 });
  t.teardown(() => double.close());
  const v = await variantAt('iou_eval');
  // Hold the variant's row lock so that the double's start UPDATE waits on it.
  const locker = new pg.Client({ connectionString: db.url });
  locker.on('error', () => {}); // killed by the restart
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query('SELECT 1 FROM jobs_variants WHERE job_variants_id = $1 FOR UPDATE', [v.id]);
  const answer = post(double.url, routeOf('iou_eval'), v.body, { 'x-pipeline-timeout-ms': '60000' });
  await waitFor(
    async () => {
      const r = await db.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%start_token%'`,
      );
      return r.rowCount === 1;
    },
    { message: 'the start waits on the row lock' },
  );
  await db.restartServer();
  await locker.end().catch(() => {});
  const a = await answer;
  t.equal(a.status, 200, 'answered after PostgreSQL came back');
  t.ok(double.dbRetries() >= 1, 'the start failed with the restart and was retried');
  t.match(await rowOf(v.id), { current_step: 'iou_eval', status: 'done', attempt: 1 });
  t.match(double.pairCounts().get(`${v.id}|iou_eval`), { ok: 1, conflict: 0, unavailable: 0 });
});

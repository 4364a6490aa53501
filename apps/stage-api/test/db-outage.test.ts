/**
 * The answer is sent only after the finish is written (docs/stage-api.md,
 * "When the database is away"). The stage's pool goes through a TCP proxy
 * that the test cuts, so the database is really unreachable for the stage
 * while the test's own pool checks the rows:
 * - the finish cannot be written before the deadline: 503, result dropped,
 *   the row stays running;
 * - a short outage at the finish is ridden out: 200;
 * - a COMMIT whose answer is lost is read back (the token says it is ours): 200, one result row;
 * - a start whose answer is lost is read back: the work goes on: 200;
 * - the database away at the start until the deadline: 503, nothing recorded.
 */
import pg from 'pg';
import t from 'tap';
import type { Test } from 'tap';
import type { StageHooks } from '../src/stages/runner.js';
import { type DbProxy, startDbProxy } from './db-proxy.js';
import { ok, startFakeOpenAi } from './fake-openai.js';
import { seedJob, tempStorage, testApp, testDb, variantState, waitFor } from './helpers.js';

const VALIDATE = '/api/yh/llava/stage1/validate';
const ANALYSIS = {
  usable: true,
  description: 'A cup of coffee on a saucer.',
  dominant_colors: ['#5a3d2b'],
  problems: [],
};

interface Setup {
  db: Awaited<ReturnType<typeof testDb>>;
  proxy: DbProxy;
  app: Awaited<ReturnType<typeof testApp>>;
  jobId: string;
  tenantId: string;
  variantId: string;
}

/** A database, the proxy, a pool through it for the app, a fast fake VLM and one variant queued for vlm_analyze. */
async function setup(t: Test, hooks: StageHooks): Promise<Setup> {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const proxy = await startDbProxy(t, db.url);
  const pool = new pg.Pool({ connectionString: proxy.url, max: 4 });
  pool.on('error', () => {}); // the cut kills idle connections on purpose
  t.teardown(() => pool.end());
  const fake = await startFakeOpenAi(t, [ok(ANALYSIS)]);
  const app = await testApp(t, db, storage, {
    pool,
    hooks,
    vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 },
  });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'vlm_analyze',
    variantStatus: 'queued',
  });
  return { db, proxy, app, jobId: job.jobId, tenantId: job.tenantId, variantId: job.variantIds[0] as string };
}

async function results(db: Setup['db'], jobId: string): Promise<number> {
  const r = await db.pool.query('SELECT count(*)::int AS n FROM stage_vlm_analyses WHERE job_id = $1', [jobId]);
  return r.rows[0].n;
}

async function token(db: Setup['db'], variantId: string): Promise<string | null> {
  const r = await db.pool.query('SELECT start_token FROM jobs_variants WHERE job_variants_id = $1', [variantId]);
  return r.rows[0].start_token;
}

function post(s: Setup, timeoutMs: number) {
  return s.app.inject({
    method: 'POST',
    url: VALIDATE,
    headers: { 'x-pipeline-timeout-ms': String(timeoutMs) },
    payload: { job_id: s.jobId, tenant_id: s.tenantId, job_variants_id: s.variantId, attempt: 1 },
  });
}

t.test('the finish cannot be written before the deadline: 503, result dropped, the row stays running', async (t) => {
  let proxy: DbProxy | null = null;
  const s = await setup(t, {
    afterExecute: async () => {
      proxy?.cut();
    },
  });
  proxy = s.proxy;
  const t0 = Date.now();
  // The deadline leaves the work itself (the CPU heuristic, up to 2 s on a loaded 2-core machine) room to finish,
  // so that it is the finish's write, not the work, that runs out of time.
  const r = await post(s, 5_000);
  const elapsed = Date.now() - t0;
  t.equal(r.statusCode, 503, r.body);
  t.match(r.json(), {
    status: 'unavailable',
    attempt: 1,
    error:
      /database unavailable: the finish of vlm_analyze attempt 1 could not be written by the deadline; result dropped/,
  });
  t.ok(elapsed >= 4_900, `answered after the deadline, not before (${elapsed} ms)`);
  t.ok(elapsed < 5_000 + 10_000, `and soon after it (${elapsed} ms)`);
  t.ok(s.proxy.dropped > 0, 'the finish was retried while the database was away');
  t.match(await variantState(s.db.pool, s.variantId), { current_step: 'vlm_analyze', status: 'running', attempt: 1 });
  t.ok(await token(s.db, s.variantId), 'the row carries the start token of the request');
  t.equal(await results(s.db, s.jobId), 0, 'no result stored');
  s.proxy.restore();
});

t.test('a short outage at the finish is ridden out: 200 once the database is back', async (t) => {
  let proxy: DbProxy | null = null;
  const s = await setup(t, {
    afterExecute: async () => {
      proxy?.cut();
      // The outage ends once the stage has tried to reconnect twice.
      void waitFor(() => (proxy?.dropped ?? 0) >= 2, { timeoutMs: 20_000 }).then(() => proxy?.restore());
    },
  });
  proxy = s.proxy;
  const r = await post(s, 20_000);
  t.equal(r.statusCode, 200, r.body);
  t.ok(s.proxy.dropped >= 2, 'the stage retried through the outage');
  t.match(await variantState(s.db.pool, s.variantId), { current_step: 'vlm_analyze', status: 'done', attempt: 1 });
  t.equal(await results(s.db, s.jobId), 1, 'one result row');
});

t.test('a COMMIT whose answer was lost is read back with the token: 200, one result row', async (t) => {
  let lost: Promise<void> | null = null;
  let proxy: DbProxy | null = null;
  const s = await setup(t, {
    afterExecute: async () => {
      lost = proxy?.loseAnswerTo('COMMIT\0') ?? null;
    },
  });
  proxy = s.proxy;
  const r = await post(s, 20_000);
  t.ok(lost, 'the proxy was armed');
  await lost;
  t.equal(r.statusCode, 200, r.body);
  t.match(r.json(), { status: 'done', attempt: 1 });
  t.match(await variantState(s.db.pool, s.variantId), { current_step: 'vlm_analyze', status: 'done', attempt: 1 });
  t.equal(await results(s.db, s.jobId), 1, 'the results of the commit, once');
});

t.test('a start whose answer was lost is read back: ours, so the work goes on: 200', async (t) => {
  let lost: Promise<void> | null = null;
  let proxy: DbProxy | null = null;
  const s = await setup(t, {
    beforeStart: async () => {
      // The start's UPDATE is the statement that writes start_token.
      lost = proxy?.loseAnswerTo('start_token = $6') ?? null;
    },
  });
  proxy = s.proxy;
  const r = await post(s, 20_000);
  t.ok(lost, 'the proxy was armed');
  await lost;
  t.equal(r.statusCode, 200, r.body);
  t.match(await variantState(s.db.pool, s.variantId), { current_step: 'vlm_analyze', status: 'done', attempt: 1 });
  t.equal(await results(s.db, s.jobId), 1);
});

t.test('the database away at the start until the deadline: 503, nothing recorded', async (t) => {
  let proxy: DbProxy | null = null;
  let cuts = 0;
  const s = await setup(t, {
    beforeStart: async () => {
      if (cuts++ === 0) proxy?.cut(); // the first request only
    },
  });
  proxy = s.proxy;
  const r = await post(s, 1_500);
  t.equal(r.statusCode, 503, r.body);
  t.match(r.json(), {
    status: 'unavailable',
    error: /database unavailable until the deadline: vlm_analyze was not started, nothing recorded/,
  });
  t.ok(s.proxy.dropped > 0, 'the start was retried');
  t.match(await variantState(s.db.pool, s.variantId), { current_step: 'vlm_analyze', status: 'queued', attempt: 1 });
  t.equal(await token(s.db, s.variantId), null, 'no start token written');
  s.proxy.restore();
  const again = await post(s, 20_000);
  t.equal(again.statusCode, 200, 'the same attempt runs once the database is back');
});

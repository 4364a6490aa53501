// Registration, configuration, the disabled flag, the host's own
// @fastify/postgres and @fastify/schedule, and nothing left open after close().
import fastifyPostgres from '@fastify/postgres';
import fastifySchedule from '@fastify/schedule';
import Fastify from 'fastify';
import t from 'tap';
import { jobStateListener, resolveConfig } from '../src/index.js';
import { startFakeStage } from './fake-stage.js';
import { buildApp, FAST, markImgGenDone, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

async function listenerConnections(): Promise<number> {
  const r = await db.pool.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name LIKE 'job_state_listener%'`,
  );
  return r.rows[0].n;
}

/** Active timers and sockets, minus those of the test's own pg pool (one socket and one idle timer per client). */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  counts.TCPSocketWrap = (counts.TCPSocketWrap ?? 0) - db.pool.totalCount;
  counts.Timeout = (counts.Timeout ?? 0) - db.pool.idleCount;
  return counts;
}

t.test('nothing is left open after close(): connections, timers, sockets', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  await db.pool.query('SELECT 1');
  const before = resources();
  const { app } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, recoveryIntervalMs: 200 });
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 2 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => stage.requests.length >= 4, { timeoutMs: 30_000 });
  await waitFor(() => (app.jobStateListener.status().recoveryRuns ?? 0) >= 2, { timeoutMs: 30_000 });
  t.ok((await listenerConnections()) >= 2, 'LISTEN connection and dispatch pool open while running');
  const listen = await db.pool.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'job_state_listener'`,
  );
  t.equal(listen.rows[0].n, 1, 'one LISTEN connection named job_state_listener');
  await app.close();
  await waitFor(async () => (await listenerConnections()) === 0, { timeoutMs: 10_000, message: 'connections closed' });
  t.pass('no job_state_listener connection left in pg_stat_activity');
  await waitFor(
    () => {
      const after = resources();
      return (after.Timeout ?? 0) <= (before.Timeout ?? 0) && (after.TCPSocketWrap ?? 0) <= (before.TCPSocketWrap ?? 0);
    },
    { timeoutMs: 10_000, message: `no extra timers or sockets: before ${JSON.stringify(before)}` },
  );
  t.pass(`active resources back to ${JSON.stringify(resources())}`);
  await app.close(); // closing twice is fine
});

t.test('ENABLE_JOB_STATE_LISTENER=false: registers, opens nothing, says so', async (t) => {
  const { app, logs } = await buildApp({ connectionString: db.url, env: { ENABLE_JOB_STATE_LISTENER: 'false' } });
  t.teardown(() => app.close());
  t.same(app.jobStateListener.status(), { enabled: false, connected: false, lastNotificationAt: null, reconnects: 0 });
  t.equal(await listenerConnections(), 0, 'no connection opened');
  t.ok(
    logs.some((l) => /disabled/.test(String(l.msg))),
    'logged that it is disabled',
  );
  t.same(await app.jobStateListener.recover(), { scanned: 0, recovered: 0 });
});

t.test('invalid options fail registration with a message naming the option', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ reconnectDelayMs: -1 }, /option reconnectDelayMs/],
    [{ reconnectDelay: -1 }, /option reconnectDelay/],
    [{ fanInPolicy: 'some' }, /option fanInPolicy/],
    [{ stageApiUrl: 'ftp://x' }, /option stageApiUrl/],
    [{ maxInFlight: 0 }, /option maxInFlight/],
    [{ bogus: true }, /unknown option\(s\): bogus/],
    [{ stepOverrides: { teleport: {} } }, /stepOverrides: unknown step teleport/],
    [{ stepOverrides: { planner: { timeoutMs: 5000, rescueAfterMs: 100 } } }, /rescueAfterMs/],
    [{ env: { PIPELINE_FANIN_POLICY: 'most' } }, /PIPELINE_FANIN_POLICY/],
    [{ env: { JOB_STATE_LISTENER_RECOVERY_INTERVAL: 'soon' } }, /JOB_STATE_LISTENER_RECOVERY_INTERVAL/],
    [{ env: { ENABLE_JOB_STATE_LISTENER: 'maybe' } }, /ENABLE_JOB_STATE_LISTENER/],
  ];
  for (const [opts, msg] of cases) {
    const app = Fastify();
    const p = app.register(jobStateListener, { connectionString: db.url, ...opts } as never);
    await t.rejects(
      async () => {
        await p.ready();
      },
      msg,
      JSON.stringify(opts),
    );
    await app.close().catch(() => {});
  }
  const app = Fastify();
  await t.rejects(async () => {
    await app.register(jobStateListener, { env: {} }).ready();
  }, /no database configured/);
  await app.close().catch(() => {});
  t.equal(await listenerConnections(), 0, 'failed registrations leave nothing open');
});

t.test('environment variables are read, options override them', async (t) => {
  const c = resolveConfig({
    env: {
      DATABASE_URL: 'postgres://u@h/db',
      JOB_STATE_LISTENER_RECONNECT_DELAY: '2',
      JOB_STATE_LISTENER_RECOVERY_INTERVAL: '30',
      JOB_STATE_LISTENER_RECOVERY_WINDOW: '12',
      PIPELINE_FANIN_POLICY: 'any',
      STAGE_API_URL: 'http://stage:9000',
      STAGE_API_TOKEN: 'tok',
    },
    recoveryIntervalMs: 250,
  });
  t.match(c, {
    enabled: true,
    connectionString: 'postgres://u@h/db',
    reconnectDelayMs: 2000,
    recoveryIntervalMs: 250,
    recoveryWindowHours: 12,
    fanInPolicy: 'any',
    stageApiUrl: 'http://stage:9000',
    stageApiToken: 'tok',
  });
  const d = resolveConfig({ env: {} });
  t.match(d, {
    reconnectDelayMs: 5000,
    recoveryIntervalMs: 60000,
    recoveryWindowHours: 24,
    fanInPolicy: 'all',
    stageApiUrl: 'http://localhost:8011',
  });
});

t.test("uses the host's @fastify/postgres pool and leaves the host's @fastify/schedule alone", async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const app = Fastify();
  await app.register(fastifyPostgres, { connectionString: db.url });
  await app.register(fastifySchedule);
  // The plugin's own recovery timer; shortened to see it run twice.
  await app.register(jobStateListener, { ...FAST, stageApiUrl: stage.url, recoveryIntervalMs: 200 });
  await app.ready();
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 1 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => stage.calls('yolo_detect', s.variantIds[0]).length === 1, { timeoutMs: 30_000 });
  const own = await db.pool.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'job_state_listener_dispatch'`,
  );
  t.equal(own.rows[0].n, 0, 'no pool of its own: the host pool dispatches');
  const runs = app.jobStateListener.status().recoveryRuns ?? 0;
  await waitFor(() => (app.jobStateListener.status().recoveryRuns ?? 0) >= runs + 2, {
    timeoutMs: 30_000,
    message: 'periodic recovery runs on the plugin timer',
  });
  t.same(
    app.scheduler.getAllJobs().map((j) => j.id),
    [],
    "nothing added to the host's scheduler",
  );
  await app.close();
  await waitFor(async () => (await listenerConnections()) === 0, { timeoutMs: 10_000 });
  t.pass('closed with the host');
});

t.test('registering twice is an error', async (t) => {
  const app = Fastify();
  app.register(jobStateListener, { ...FAST, connectionString: db.url });
  app.register(jobStateListener, { ...FAST, connectionString: db.url });
  await t.rejects(async () => {
    await app.ready();
  }, /already registered/);
  await app.close().catch(() => {});
});

/**
 * Live updates over real HTTP and a real PostgreSQL (docs/dashboard.md, "Live
 * updates"): one LISTEN connection named pipeline_dashboard for every
 * browser (never job_state_listener), or none when the listener plugin in the
 * same app shares its notifications; events filtered per job; a reconnect
 * with Last-Event-ID (or the page's `since`) replays what was missed from a
 * ring of the last 10,000 events; an older, malformed or foreign id, and a
 * lost LISTEN connection, give a reset; heartbeats; close() ends the streams
 * and the connection.
 */
import jobStateListener from '@feedlyai/listener-plugin';
import Fastify from 'fastify';
import t from 'tap';
import { dashboard } from '../src/index.js';
import { buildApp, seedJob, testDb, waitFor } from './helpers.js';
import { openSse, type SseClient } from './sse-client.js';

const db = await testDb();
t.teardown(() => db.close());

async function connections(name: string): Promise<number> {
  const r = await db.pool.query(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
    [name],
  );
  return r.rows[0].n;
}

/** Moves a variant to (step, running): a notification the listener takes no action on. */
async function move(variantId: string, step: string): Promise<void> {
  await db.pool.query(`UPDATE jobs_variants SET current_step = $2, status = 'running' WHERE job_variants_id = $1`, [
    variantId,
    step,
  ]);
}

const STEPS = ['vlm_analyze', 'yolo_detect', 'planner', 'overlay', 'vlm_judge', 'ocr_eval', 'readability_eval'];

async function listen(app: Awaited<ReturnType<typeof buildApp>>['app']): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address();
  if (!a || typeof a === 'string') throw new Error('no address');
  return `http://127.0.0.1:${a.port}/pipeline`;
}

/** The `since` id a jobs page hands its script (data-events). */
async function pageSince(base: string): Promise<string> {
  const html = await (await fetch(`${base}/`)).text();
  const m = /data-events="[^"]*since=([^"&]+)"/.exec(html);
  if (!m) throw new Error('no data-events on the page');
  return m[1] as string;
}

const variantEvents = (c: SseClient) => c.events.filter((e) => e.event === 'variant').map((e) => JSON.parse(e.data));

t.test('one pipeline_dashboard connection for every browser; events per job', async (t) => {
  const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url });
  t.teardown(() => app.close());
  const base = await listen(app);
  const a = await seedJob(db.pool, { variants: 1 });
  const b = await seedJob(db.pool, { variants: 1 });
  const all = await Promise.all([openSse(`${base}/events`), openSse(`${base}/events`), openSse(`${base}/events`)]);
  const onlyA = await openSse(`${base}/events?job=${a.jobId}`);
  t.teardown(() => {
    for (const c of [...all, onlyA]) c.close();
  });
  t.equal(all[0]?.status, 200);
  t.match(all[0]?.headers['content-type'], /text\/event-stream/);
  t.equal(await connections('pipeline_dashboard'), 1, 'one LISTEN connection for four streams');
  t.equal(
    await connections('job_state_listener'),
    0,
    'never named job_state_listener (instances count those as peers)',
  );

  const sent = Date.now();
  await move(a.variantIds[0] as string, 'planner');
  await move(b.variantIds[0] as string, 'overlay');
  await waitFor(() => all.every((c) => variantEvents(c).length === 2), {
    timeoutMs: 10_000,
    message: 'every stream got both',
  });
  t.comment(`first event on every stream ${Date.now() - sent} ms after the UPDATEs (measured, not asserted)`);
  t.match(variantEvents(all[0] as SseClient)[0], {
    job_id: a.jobId,
    job_variants_id: a.variantIds[0],
    current_step: 'planner',
    status: 'running',
    tenant_id: 'pipeline_test_tenant_v2',
  });
  await waitFor(() => variantEvents(onlyA).length === 1, { timeoutMs: 5_000 });
  t.same(
    variantEvents(onlyA).map((e) => e.job_id),
    [a.jobId],
    'a job page gets its own job only',
  );
  t.equal((await fetch(`${base}/events?job=nope`, { headers: { accept: 'application/json' } })).status, 400);
});

t.test('a reconnect replays what it missed; a bad or old id gets a reset', async (t) => {
  const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url });
  t.teardown(() => app.close());
  const base = await listen(app);
  const s = await seedJob(db.pool, { variants: 1 });
  const v = s.variantIds[0] as string;

  const since = await pageSince(base);
  await move(v, STEPS[0] as string);
  const first = await openSse(`${base}/events?since=${since}`);
  await waitFor(() => variantEvents(first).length === 1, {
    timeoutMs: 10_000,
    message: 'the change made between page and stream',
  });
  t.equal(
    variantEvents(first)[0]?.current_step,
    'vlm_analyze',
    "the page's since replays what happened after it rendered",
  );
  await move(v, STEPS[1] as string);
  await waitFor(() => variantEvents(first).length === 2, { timeoutMs: 10_000 });
  const last = first.lastId() as string;
  first.close();

  for (const step of STEPS.slice(2, 5)) await move(v, step);
  const again = await openSse(`${base}/events`, { 'last-event-id': last });
  t.teardown(() => again.close());
  await waitFor(() => variantEvents(again).length === 3, { timeoutMs: 10_000, message: 'the three missed events' });
  t.same(
    variantEvents(again).map((e) => e.current_step),
    ['planner', 'overlay', 'vlm_judge'],
    'exactly what was missed, in order',
  );
  t.notOk(
    again.events.some((e) => e.event === 'reset'),
    'no reset',
  );
  await move(v, STEPS[5] as string);
  await waitFor(() => variantEvents(again).length === 4, { timeoutMs: 10_000, message: 'then the live events' });

  const boot = since.split('-')[0];
  for (const [id, why] of [
    ['garbage', /malformed/],
    ['ffffffff-3', /another server start/],
    [`${boot}-999999`, /not handed out yet/],
  ] as const) {
    const c = await openSse(`${base}/events`, { 'last-event-id': id });
    await waitFor(() => c.events.length === 1, { timeoutMs: 5_000 });
    c.close();
    t.equal(c.events[0]?.event, 'reset', `${id}: reset`);
    t.match(JSON.parse(c.events[0]?.data ?? '{}').reason, why);
  }
});

t.test('the ring keeps the last 10,000 events', async (t) => {
  const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url });
  t.teardown(() => app.close());
  const base = await listen(app);
  const since = await pageSince(base);
  const boot = since.split('-')[0] as string;
  const counter = await openSse(`${base}/events`);
  t.teardown(() => counter.close());
  const s = await seedJob(db.pool, { variants: 1 });
  // 10,001 distinct notifications in one statement (identical payloads would be folded into one).
  await db.pool.query(
    `SELECT pg_notify('job_variant_state_changed', json_build_object(
        'job_variants_id', $2::text, 'job_id', $1::text, 'current_step', 'planner', 'status', 'running',
        'tenant_id', 't', 'attempt', g)::text)
       FROM generate_series(1, 10001) g`,
    [s.jobId, s.variantIds[0]],
  );
  await waitFor(() => counter.events.length === 10_001, { timeoutMs: 30_000, message: '10,001 events published' });
  const start = Number(since.split('-')[1]);

  const tooOld = await openSse(`${base}/events`, { 'last-event-id': `${boot}-${start}` });
  await waitFor(() => tooOld.events.length >= 1, { timeoutMs: 10_000 });
  tooOld.close();
  t.equal(tooOld.events[0]?.event, 'reset', 'the id before the oldest kept event: reset');
  t.match(JSON.parse(tooOld.events[0]?.data ?? '{}').reason, /older than the buffer/);

  const oldest = await openSse(`${base}/events`, { 'last-event-id': `${boot}-${start + 1}` });
  t.teardown(() => oldest.close());
  await waitFor(() => oldest.events.length === 10_000, { timeoutMs: 30_000, message: '10,000 replayed' });
  t.equal(oldest.events[0]?.id, `${boot}-${start + 2}`);
  t.equal(JSON.parse(oldest.events.at(-1)?.data ?? '{}').attempt, 10_001, 'up to the newest');
  t.notOk(oldest.events.some((e) => e.event === 'reset'));
});

t.test('a lost LISTEN connection: reconnected, and every stream told to reload', async (t) => {
  const { app, logs } = await buildApp({ allowAnonymous: true, connectionString: db.url });
  t.teardown(() => app.close());
  const base = await listen(app);
  const s = await seedJob(db.pool, { variants: 1 });
  const c = await openSse(`${base}/events`);
  t.teardown(() => c.close());
  await move(s.variantIds[0] as string, 'planner');
  await waitFor(() => variantEvents(c).length === 1, { timeoutMs: 10_000 });
  const before = c.lastId() as string;
  await db.pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pipeline_dashboard'`,
  );
  await waitFor(() => c.events.some((e) => e.event === 'reset'), {
    timeoutMs: 15_000,
    message: 'a reset after the reconnect',
  });
  t.equal(await connections('pipeline_dashboard'), 1, 'the connection is back');
  t.ok(
    logs.some((l) => l.msg === 'dashboard LISTEN connection lost'),
    'the loss is logged',
  );
  const late = await openSse(`${base}/events`, { 'last-event-id': before });
  await waitFor(() => late.events.length === 1, { timeoutMs: 5_000 });
  late.close();
  t.equal(late.events[0]?.event, 'reset', 'an id from before the gap cannot be replayed');
  await move(s.variantIds[0] as string, 'overlay');
  await waitFor(() => variantEvents(c).length === 2, { timeoutMs: 10_000, message: 'events flow again' });
});

t.test('a malformed notification is logged and skipped; the stream goes on', async (t) => {
  const { app, logs } = await buildApp({ allowAnonymous: true, connectionString: db.url });
  t.teardown(() => app.close());
  const base = await listen(app);
  const s = await seedJob(db.pool, { variants: 1 });
  const c = await openSse(`${base}/events`);
  t.teardown(() => c.close());
  await db.pool.query(
    `SELECT pg_notify('job_state_changed', '{not json'), pg_notify('job_variant_state_changed', '{"job_id":"x"}')`,
  );
  await move(s.variantIds[0] as string, 'planner');
  await waitFor(() => variantEvents(c).length === 1, {
    timeoutMs: 10_000,
    message: 'the valid change after the bad ones',
  });
  t.equal(c.events.length, 1, 'nothing for the malformed payloads');
  t.equal(logs.filter((l) => l.msg === 'dashboard: malformed notification skipped').length, 2, 'both logged');
});

t.test('heartbeats keep idle streams open (heartbeatMs shortened to test that timer)', async (t) => {
  const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url, heartbeatMs: 50 });
  t.teardown(() => app.close());
  const base = await listen(app);
  const c = await openSse(`${base}/events`);
  t.teardown(() => c.close());
  await waitFor(() => c.comments >= 3, { timeoutMs: 5_000, message: 'comment lines' });
  t.pass('`: ping` comments arrive on an idle stream');
});

t.test('close() ends the open streams and closes the connections', async (t) => {
  const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url });
  const base = await listen(app);
  await fetch(`${base}/api/jobs`);
  const streams = await Promise.all([openSse(`${base}/events`), openSse(`${base}/events`)]);
  t.equal(await connections('pipeline_dashboard'), 1);
  await app.close();
  await waitFor(() => streams.every((c) => c.ended), { timeoutMs: 5_000, message: 'the streams ended' });
  await waitFor(async () => (await connections('pipeline_dashboard')) === 0, { timeoutMs: 5_000 });
  await waitFor(async () => (await connections('pipeline_dashboard_pages')) === 0, { timeoutMs: 5_000 });
  t.pass('no connection of the dashboard left');
});

for (const order of ['dashboard first', 'listener first'] as const) {
  t.test(`with the listener plugin in the same app (${order}): its notifications, no second connection`, async (t) => {
    const app = Fastify({ logger: false });
    const registerListener = () =>
      app.register(jobStateListener, {
        env: {},
        connectionString: db.url,
        stageApiUrl: 'http://127.0.0.1:9',
        reconnectDelayMs: 100,
        closeGraceMs: 1_000,
      });
    const registerDashboard = () =>
      app.register(dashboard, { prefix: '/pipeline', allowAnonymous: true, env: {}, connectionString: db.url });
    if (order === 'dashboard first') {
      registerDashboard();
      registerListener();
    } else {
      registerListener();
      registerDashboard();
    }
    t.teardown(() => app.close());
    await app.listen({ host: '127.0.0.1', port: 0 });
    const a = app.server.address();
    const base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/pipeline`;
    const s = await seedJob(db.pool, { variants: 1 });
    const c = await openSse(`${base}/events?job=${s.jobId}`);
    t.teardown(() => c.close());
    await move(s.variantIds[0] as string, 'planner');
    await waitFor(() => variantEvents(c).length === 1, { timeoutMs: 10_000, message: "the listener's notification" });
    t.equal(await connections('pipeline_dashboard'), 0, 'the dashboard opened no LISTEN connection');
    t.equal(await connections('job_state_listener'), 1, "the listener's one");
    t.match(await (await fetch(`${base}/`)).text(), /live updates: the listener plugin&#39;s connection/);
  });
}

t.test('with a disabled listener plugin: its own connection', async (t) => {
  const app = Fastify({ logger: false });
  app.register(jobStateListener, { env: {}, enabled: false });
  app.register(dashboard, { prefix: '/pipeline', allowAnonymous: true, env: {}, connectionString: db.url });
  t.teardown(() => app.close());
  await app.ready();
  t.equal(await connections('pipeline_dashboard'), 1);
});

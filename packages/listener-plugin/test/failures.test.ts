// Stage failures: retry after 5xx, give up at the limit (policy all and any),
// 4xx not retried, busy answers and connection drops re-send the same attempt.
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, jobState, markImgGenDone, seedJob, testDb, variantState, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

const fastRetry = { retry: { backoffBaseMs: 50, backoffMaxMs: 200 } };
const overrides = {
  vlm_analyze: fastRetry,
  yolo_detect: fastRetry,
  planner: fastRetry,
  overlay: fastRetry,
};

async function jobDone(jobId: string): Promise<boolean> {
  const j = await jobState(db.pool, jobId);
  return j.current_step === 'instagram_feed_gen' && j.status === 'done';
}

t.test('a stage answering 500 then 200 is retried as attempt 2', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app, logs } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, stepOverrides: overrides });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const failed: unknown[] = [];
  app.jobStateListener.on('step:failed', (e) => failed.push(e));
  const s = await seedJob(db.pool, { variants: 1 });
  stage.script('vlm_analyze', [{ status: 500 }, { status: 200 }], { subject: s.variantIds[0] });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => jobDone(s.jobId), { timeoutMs: 60_000, message: 'job done' });
  t.same(
    stage.calls('vlm_analyze', s.variantIds[0]).map((r) => [r.attempt, r.status]),
    [
      [1, 500],
      [2, 200],
    ],
  );
  t.equal(stage.calls('yolo_detect', s.variantIds[0]).length, 1, 'the chain goes on once');
  t.ok((app.jobStateListener.status().retries ?? 0) >= 1);
  t.match(failed[0], { step: 'vlm_analyze', attempt: 1, httpStatus: 500 });
  t.ok(logs.some((l) => l.msg === 'pipeline step failed' && l.step === 'vlm_analyze'));
  const runs = await db.pool.query(
    `SELECT attempt, trigger, state, http_status FROM pipeline_step_runs WHERE job_variants_id = $1 AND step = 'vlm_analyze' ORDER BY run_id`,
    [s.variantIds[0]],
  );
  t.match(runs.rows, [
    // From the notification, or from a sweep (every 500 ms in these tests) that read the fresh row first.
    { attempt: 1, trigger: /^(notify|recovery)$/, state: 'failed', http_status: 500 },
    { attempt: 2, trigger: 'retry', state: 'succeeded', http_status: 200 },
  ]);
});

t.test('a stage that keeps failing is given up and the job fails with the reason (policy all)', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, stepOverrides: overrides });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const events: string[] = [];
  app.jobStateListener.on('step:gave-up', () => events.push('gave-up'));
  app.jobStateListener.on('job:failed', (e) => events.push(`job:failed ${e.reason}`));
  const s = await seedJob(db.pool, { variants: 2 });
  stage.script('planner', [{ status: 500 }], { subject: s.variantIds[0], repeat: true });
  await markImgGenDone(db.pool, s.variantIds);
  const reason = 'planner failed after 3 attempts: scripted failure 500';
  await waitFor(async () => (await jobState(db.pool, s.jobId)).failure_reason === reason, {
    timeoutMs: 60_000,
    message: 'job failed with the reason',
  });
  t.match(await jobState(db.pool, s.jobId), { status: 'failed', failure_reason: reason });
  t.same(
    stage.calls('planner', s.variantIds[0]).map((r) => r.attempt),
    [1, 2, 3],
    'three attempts, then given up',
  );
  const v = await db.pool.query('SELECT given_up_at FROM jobs_variants WHERE job_variants_id = $1', [s.variantIds[0]]);
  t.ok(v.rows[0].given_up_at, 'variant marked given up');
  await waitFor(() => events.includes(`job:failed ${reason}`), { timeoutMs: 10_000 });
  t.ok(events.includes('gave-up'));
  t.equal(stage.calls('overlay', s.variantIds[0]).length, 0, 'nothing after the failed step');
  t.equal(stage.calls('ad_copy_gen_kor').length, 0, 'no fan-in');
});

t.test('policy any: the job goes on with the variants that succeeded; fails when none did', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    stepOverrides: overrides,
    fanInPolicy: 'any',
  });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 2 });
  stage.script('overlay', [{ status: 500 }], { subject: s.variantIds[1], repeat: true });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => jobDone(s.jobId), { timeoutMs: 60_000, message: 'job done without the failed variant' });
  t.equal(stage.calls('overlay', s.variantIds[1]).length, 3);
  t.equal(stage.calls('ad_copy_gen_kor', s.jobId).length, 1, 'fan-in once');
  t.match(await variantState(db.pool, s.variantIds[1]), { current_step: 'overlay', status: 'failed' });
  t.equal((await jobState(db.pool, s.jobId)).failure_reason, null);

  const all = await seedJob(db.pool, { variants: 2 });
  for (const id of all.variantIds) stage.script('yolo_detect', [{ status: 502 }], { subject: id, repeat: true });
  await markImgGenDone(db.pool, all.variantIds);
  await waitFor(async () => (await jobState(db.pool, all.jobId)).failure_reason !== null, {
    timeoutMs: 60_000,
    message: 'job failed when every variant gave up',
  });
  t.match(await jobState(db.pool, all.jobId), {
    status: 'failed',
    failure_reason: /^every variant failed: yolo_detect failed after 3 attempts/,
  });
  t.equal(stage.calls('ad_copy_gen_kor', all.jobId).length, 0);
});

t.test('400 and 422 (bad input) are not retried: the step fails and is given up at once', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, stepOverrides: overrides });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  for (const status of [400, 422]) {
    const s = await seedJob(db.pool, { variants: 1 });
    stage.script('yolo_detect', [{ status }], { subject: s.variantIds[0] });
    await markImgGenDone(db.pool, s.variantIds);
    await waitFor(async () => (await jobState(db.pool, s.jobId)).failure_reason !== null, {
      timeoutMs: 60_000,
      message: `job failed after ${status}`,
    });
    t.equal(stage.calls('yolo_detect', s.variantIds[0]).length, 1, `${status}: called once, not retried`);
    t.match(await variantState(db.pool, s.variantIds[0]), {
      current_step: 'yolo_detect',
      status: 'failed',
      last_error: new RegExp(`stage answered ${status}`),
    });
    t.match((await jobState(db.pool, s.jobId)).failure_reason, /^yolo_detect failed after 1 attempts: stage answered/);
  }
});

t.test('429 with Retry-After and a dropped connection re-send the same attempt', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, stepOverrides: overrides });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 1 });
  const id = s.variantIds[0]!;
  stage.script('vlm_analyze', [{ status: 429, retryAfter: '0.2' }, { status: 503 }, {}], { subject: id });
  stage.script('yolo_detect', [{ drop: true }, {}], { subject: id });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => jobDone(s.jobId), { timeoutMs: 60_000, message: 'job done' });
  t.same(
    stage.calls('vlm_analyze', id).map((r) => [r.attempt, r.status]),
    [
      [1, 429],
      [1, 503],
      [1, 200],
    ],
    'busy answers: same attempt re-sent',
  );
  t.same(
    stage.calls('yolo_detect', id).map((r) => [r.attempt, r.status]),
    [
      [1, 0],
      [1, 200],
    ],
    'dropped connection: same attempt re-sent',
  );
  t.equal((await variantState(db.pool, id)).attempt, 1);
});

t.test('409: the state changed meanwhile, logged and skipped', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app, logs } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 1 });
  stage.script('vlm_analyze', [{ status: 409 }], { subject: s.variantIds[0] });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(
    () => logs.some((l) => l.msg === 'skipped because the state changed meanwhile' && l.http_status === 409),
    {
      timeoutMs: 30_000,
    },
  );
  t.equal(stage.calls('vlm_analyze').length, 1, 'not re-sent');
  t.ok((app.jobStateListener.status().skips ?? 0) >= 1);
  const line = logs.find((l) => l.msg === 'skipped because the state changed meanwhile' && l.http_status === 409);
  t.equal(line?.level, 30, 'logged at info (what docs/logs.md tells operators to grep for)');
});

// Stuck-step rescue with attempt fencing, and manual retry / cancel with the listener running.
import { cancelJob, retryJob } from '@feedlyai/pipeline-core';
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, jobState, markImgGenDone, seedJob, testDb, variantState, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

async function jobDone(jobId: string): Promise<boolean> {
  const j = await jobState(db.pool, jobId);
  return j.current_step === 'instagram_feed_gen' && j.status === 'done';
}

t.test('a stuck step is rescued as a new attempt, and the old attempt’s late completion is refused', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app, logs } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    recoveryIntervalMs: 300,
    stepOverrides: { overlay: { timeoutMs: 1_500, rescueAfterMs: 2_500 } },
  });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 1 });
  const id = s.variantIds[0]!;
  stage.script('overlay', [{ hang: true }, {}], { subject: id });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => stage.calls('overlay', id).length === 2, { timeoutMs: 60_000, message: 'rescued' });
  await waitFor(async () => (await variantState(db.pool, id)).current_step !== 'overlay', { timeoutMs: 30_000 });
  t.same(
    stage.calls('overlay', id).map((r) => r.attempt),
    [1, 2],
    'attempt 2 dispatched by the rescue',
  );
  // The stage finally finishes attempt 1: the fencing token refuses it.
  t.equal(await stage.finishHung(id), false, 'late finish of attempt 1 refused');
  await waitFor(() => jobDone(s.jobId), { timeoutMs: 60_000, message: 'job done' });
  t.equal(stage.calls('vlm_judge', id).length, 1, 'the next step ran once');
  const runs = await db.pool.query(
    `SELECT attempt, trigger, state FROM pipeline_step_runs WHERE job_variants_id = $1 AND step = 'overlay' ORDER BY run_id`,
    [id],
  );
  // Attempt 1 comes from the notification or, on a loaded machine, from a sweep (every 300 ms
  // here) that read the fresh (planner,'done') row first: the guarded claim lets one of them win.
  t.match(runs.rows, [
    { attempt: 1, trigger: /^(notify|recovery)$/, state: 'timeout' },
    { attempt: 2, trigger: 'rescue', state: 'succeeded' },
  ]);
  t.ok(logs.some((l) => l.msg === 'stuck step rescued'));
  t.ok((app.jobStateListener.status().rescues ?? 0) >= 1);
});

t.test('a step stuck at its attempt limit is timed out and given up instead of re-dispatched', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    recoveryIntervalMs: 300,
    stepOverrides: { planner: { timeoutMs: 200, rescueAfterMs: 600, retry: { maxAttempts: 1 } } },
  });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 1 });
  stage.script('planner', [{ hang: true }], { subject: s.variantIds[0] });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(async () => (await jobState(db.pool, s.jobId)).failure_reason !== null, { timeoutMs: 60_000 });
  t.match((await jobState(db.pool, s.jobId)).failure_reason, /^planner failed after 1 attempts: timed out/);
  t.equal(stage.calls('planner').length, 1, 'not re-dispatched');
});

t.test('retryJob re-queues a failed job from its failed step and the listener dispatches it', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    recoveryIntervalMs: 3_600_000,
    stepOverrides: { planner: { retry: { maxAttempts: 2, backoffBaseMs: 50 } } },
  });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 2 });
  const bad = s.variantIds[0]!;
  stage.script('planner', [{ status: 500 }, { status: 500 }, {}], { subject: bad });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(async () => (await jobState(db.pool, s.jobId)).failure_reason !== null, { timeoutMs: 60_000 });
  const r = await retryJob(db.pool, s.jobId);
  t.same(
    r.requeued.filter((x) => x.jobVariantsId === bad),
    [{ jobVariantsId: bad, step: 'planner', attempt: 3 }],
    'what was re-queued',
  );
  t.match(r.previousFailureReason, /^planner failed after 2 attempts/);
  // The good variant stopped when the job failed; the retry's job notification recovers it too.
  await waitFor(() => jobDone(s.jobId), { timeoutMs: 60_000, message: 'job done after the retry' });
  t.same(
    stage.calls('planner', bad).map((c) => c.attempt),
    [1, 2, 3],
  );
  t.equal(stage.calls('ad_copy_gen_kor', s.jobId).length, 1);
  const run = await db.pool.query(
    `SELECT trigger FROM pipeline_step_runs WHERE job_variants_id = $1 AND step = 'planner' AND attempt = 3`,
    [bad],
  );
  t.same(run.rows, [{ trigger: 'manual' }], 'the manual retry was claimed once');
});

t.test('cancelJob: nothing further is dispatched, even when a running step finishes', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, recoveryIntervalMs: 300 });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 2 });
  for (const id of s.variantIds) stage.script('vlm_analyze', [{ hang: true }], { subject: id });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => stage.calls('vlm_analyze').filter((c) => c.jobId === s.jobId).length === 2, {
    timeoutMs: 30_000,
  });
  const c = await cancelJob(db.pool, s.jobId);
  t.match(c, { cancelled: true, failureReason: 'cancelled' });
  t.match(await jobState(db.pool, s.jobId), { status: 'failed', failure_reason: 'cancelled' });
  const events = app.jobStateListener.status().events ?? 0;
  await stage.finishHung(s.variantIds[0]!);
  await waitFor(() => (app.jobStateListener.status().events ?? 0) > events, { timeoutMs: 30_000 });
  const runs = app.jobStateListener.status().recoveryRuns ?? 0;
  await waitFor(() => (app.jobStateListener.status().recoveryRuns ?? 0) >= runs + 2, { timeoutMs: 30_000 });
  t.equal(stage.calls('yolo_detect').filter((r) => r.jobId === s.jobId).length, 0, 'no further dispatch');
});

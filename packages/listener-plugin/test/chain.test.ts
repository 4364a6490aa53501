import { VARIANT_STEPS } from '@feedlyai/pipeline-core';
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, isJobDone, markImgGenDone, seedJob, testDb, variantState, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

t.test('the whole chain: 3 variants from img_gen/done to instagram_feed_gen/done, every stage in order', async (t) => {
  const stage = await startFakeStage(db.pool, { token: 'sekret' });
  t.teardown(() => stage.close());
  const { app, logs } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, stageApiToken: 'sekret' });
  t.teardown(() => app.close());
  const done: string[] = [];
  app.jobStateListener.on('job:done', (e) => done.push(e.jobId));
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });

  const s = await seedJob(db.pool, { variants: 3 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => isJobDone(db.pool, s.jobId), {
    timeoutMs: 60_000,
    message: 'job finished',
  });
  for (const id of s.variantIds) {
    t.match(await variantState(db.pool, id), { current_step: 'iou_eval', status: 'done' });
    const steps = stage.requests.filter((r) => r.jobVariantsId === id).map((r) => r.step);
    t.same(steps, VARIANT_STEPS, `variant ${id}: every variant stage once, in order`);
  }
  const jobCalls = stage.requests.filter((r) => !r.jobVariantsId).map((r) => r.step);
  t.same(jobCalls, ['ad_copy_gen_kor', 'instagram_feed_gen'], 'job-level stages once, in order');
  const lastVariantCall = Math.max(...stage.requests.filter((r) => r.jobVariantsId).map((r) => r.at));
  t.ok(stage.calls('ad_copy_gen_kor')[0]!.at > lastVariantCall, 'fan-in after every variant finished');
  t.ok(
    stage.requests.every((r) => r.authorization === 'Bearer sekret' && r.attempt === 1 && r.tenantId === s.tenantId),
  );
  await waitFor(() => done.includes(s.jobId), { timeoutMs: 10_000, message: 'job:done event' });
  const msgs = new Set(logs.map((l) => l.msg));
  for (const k of [
    'PostgreSQL connected',
    "LISTEN 'job_variant_state_changed' started",
    "LISTEN 'job_state_changed' started",
    'listener started',
    '[LISTENER] Job Variant state change detected',
    '[LISTENER] Job state change detected',
    '[TRIGGER] pipeline step triggered',
    'pipeline step succeeded',
    'recovery check',
  ]) {
    t.ok(msgs.has(k), `log keyword: ${k}`);
  }
  const trig = logs.find((l) => l.msg === '[TRIGGER] pipeline step triggered' && l.job_variants_id);
  t.match(trig, { job_id: s.jobId, step: 'vlm_analyze', attempt: 1 }, 'structured fields');
  const ok = logs.find((l) => l.msg === 'pipeline step succeeded');
  t.type(ok?.duration_ms, 'number');
  const st = app.jobStateListener.status();
  t.equal(st.dispatches, 3 * 8 + 2);
  t.ok(st.lastNotificationAt instanceof Date);
  // Run outcomes are written in batches (every 25 ms): the last one may land just after the job is done.
  const succeeded = async () =>
    (
      await db.pool.query(
        `SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1 AND state = 'succeeded'`,
        [s.jobId],
      )
    ).rows[0].n;
  await waitFor(async () => (await succeeded()) === 26, { timeoutMs: 10_000, message: 'run outcomes written' });
  t.equal(await succeeded(), 26, 'every run row recorded as succeeded');
});

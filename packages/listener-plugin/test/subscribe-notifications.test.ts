// subscribeNotifications (docs/integration.md, "Sharing the notifications"): another part of the
// same process (the dashboard) receives the notifications of the listener's LISTEN connection,
// and is told when that connection came back after being lost; a subscriber that throws changes
// nothing for the listener; a disabled listener delivers nothing.
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, markImgGenDone, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

t.test('a subscriber gets every notification and each reconnect; unsubscribing stops them', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app, logs } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url });
  t.teardown(() => app.close());
  const got: Array<{ channel: string; payload: string | undefined }> = [];
  let reconnected = 0;
  const unsubscribe = app.jobStateListener.subscribeNotifications({
    notification: (channel, payload) => got.push({ channel, payload }),
    reconnected: () => reconnected++,
  });
  app.jobStateListener.subscribeNotifications({
    notification: () => {
      throw new Error('a broken subscriber');
    },
  });
  const s = await seedJob(db.pool, { variants: 1 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(
    () => got.some((n) => n.channel === 'job_variant_state_changed' && n.payload?.includes('"vlm_analyze"')),
    { timeoutMs: 30_000, message: 'the claim of vlm_analyze reached the subscriber' },
  );
  const first = JSON.parse(got[0]?.payload ?? '{}');
  t.equal(first.job_id, s.jobId, 'the payload as the trigger sent it');
  await waitFor(() => stage.calls('vlm_analyze', s.variantIds[0] as string).length === 1, {
    timeoutMs: 30_000,
    message: 'the listener dispatched as usual despite the throwing subscriber',
  });
  t.ok(
    logs.some((l) => l.msg === 'notification subscriber failed'),
    'the broken subscriber was logged',
  );

  await db.pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'job_state_listener'`,
  );
  await waitFor(() => reconnected === 1, {
    timeoutMs: 30_000,
    message: 'reconnected() after the LISTEN connection came back',
  });

  unsubscribe();
  const seen = got.length;
  const s2 = await seedJob(db.pool, { variants: 1 });
  await markImgGenDone(db.pool, s2.variantIds);
  await waitFor(() => stage.calls('vlm_analyze', s2.variantIds[0] as string).length === 1, { timeoutMs: 30_000 });
  t.equal(got.length, seen, 'nothing after unsubscribing');
});

t.test('a disabled listener accepts a subscriber and delivers nothing', async (t) => {
  const { app } = await buildApp({ connectionString: db.url, enabled: false });
  t.teardown(() => app.close());
  const unsubscribe = app.jobStateListener.subscribeNotifications({ notification: () => t.fail('delivered') });
  t.equal(app.jobStateListener.status().enabled, false);
  unsubscribe();
});

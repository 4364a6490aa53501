// Missed notifications: a killed LISTEN connection, a stopped plugin, a
// transition whose notification never came, and the recovery window.
import { VARIANT_STEPS } from '@feedlyai/pipeline-core';
import t, { type Test } from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, countBy, jobState, markImgGenDone, seedJob, testDb, variantState, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

async function jobDone(jobId: string): Promise<boolean> {
  const j = await jobState(db.pool, jobId);
  return j.current_step === 'instagram_feed_gen' && j.status === 'done';
}

function assertOncePerStep(
  t: Test,
  requests: { jobVariantsId?: string | undefined; step?: string; jobId: string }[],
  jobId: string,
  variants: number,
) {
  const mine = requests.filter((r) => r.jobId === jobId);
  const per = countBy(mine, (r) => `${r.jobVariantsId ?? 'job'}:${r.step}`);
  t.equal(per.size, variants * VARIANT_STEPS.length + 2, 'every (subject, step) called');
  t.ok(
    [...per.values()].every((n) => n === 1),
    'each exactly once',
  );
}

t.test(
  'LISTEN connection killed with pg_terminate_backend: reconnects and dispatches every missed transition',
  async (t) => {
    const stage = await startFakeStage(db.pool);
    t.teardown(() => stage.close());
    // Periodic recovery effectively off: only the reconnect sweep can find the missed transitions.
    const { app, logs } = await buildApp({
      connectionString: db.url,
      stageApiUrl: stage.url,
      recoveryIntervalMs: 3_600_000,
      reconnectDelayMs: 500,
    });
    t.teardown(() => app.close());
    await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
    const s = await seedJob(db.pool, { variants: 5 });
    const killed = await db.pool.query(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
      WHERE application_name = 'job_state_listener' AND datname = current_database()`,
    );
    t.equal(killed.rowCount, 1, 'exactly one LISTEN connection, found by application_name');
    await markImgGenDone(db.pool, s.variantIds); // while the listener is down
    await waitFor(() => jobDone(s.jobId), { timeoutMs: 60_000, message: 'job done after reconnect' });
    t.ok(app.jobStateListener.status().reconnects >= 1, 'reconnected');
    t.ok(app.jobStateListener.status().connected);
    const msgs = logs.map((l) => l.msg);
    t.ok(msgs.includes('listener error'), 'listener error logged');
    t.ok(msgs.includes('reconnect attempt'), 'reconnect attempt logged');
    assertOncePerStep(t, stage.requests, s.jobId, 5);
    const viaRecovery = await db.pool.query(
      `SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1 AND step = 'vlm_analyze' AND trigger = 'recovery'`,
      [s.jobId],
    );
    t.ok(viaRecovery.rows[0].n >= 1, 'missed transitions claimed by the reconnect sweep');
  },
);

t.test('plugin stopped while transitions happen, then started: the startup sweep dispatches them', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const first = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, recoveryIntervalMs: 3_600_000 });
  await waitFor(() => first.app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  await first.app.close();
  const s = await seedJob(db.pool, { variants: 3 });
  await markImgGenDone(db.pool, s.variantIds);
  t.equal(stage.requests.length, 0, 'nothing dispatched while stopped');
  const second = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, recoveryIntervalMs: 3_600_000 });
  t.teardown(() => second.app.close());
  // ready() resolved after the startup sweep: the three successors are already claimed.
  const claimedAtReady = await db.pool.query(
    `SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1 AND step = 'vlm_analyze'`,
    [s.jobId],
  );
  t.equal(claimedAtReady.rows[0].n, 3, 'ready() waits for the startup sweep');
  t.equal(second.app.jobStateListener.status().recoveryRuns, 1, 'one sweep (the startup one) when ready');
  await waitFor(() => jobDone(s.jobId), { timeoutMs: 60_000, message: 'job done after restart' });
  assertOncePerStep(t, stage.requests, s.jobId, 3);
  t.ok((second.app.jobStateListener.status().recoveries ?? 0) >= 3, 'the three img_gen/done variants recovered');
  t.ok(
    second.logs.some((l) => l.msg === 'lagging variants recovered'),
    'logged with the seed keyword',
  );
});

t.test('a transition whose notification never came is picked up by the periodic recovery', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const { app, logs } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, recoveryIntervalMs: 500 });
  t.teardown(() => app.close());
  // The startup sweep has finished: what follows can only be found by the periodic one.
  await waitFor(() => logs.some((l) => l.msg === 'recovery check'), { timeoutMs: 30_000 });
  const runsBefore = app.jobStateListener.status().recoveryRuns ?? 0;
  const s = await seedJob(db.pool, { variants: 1 });
  const id = s.variantIds[0]!;
  const c = await db.pool.connect();
  try {
    // Triggers off for this session: no NOTIFY (and no updated_at stamp, so set it).
    await c.query(`SET session_replication_role = replica`);
    await c.query(
      `UPDATE jobs_variants SET current_step = 'img_gen', status = 'done', updated_at = now() WHERE job_variants_id = $1`,
      [id],
    );
    await c.query('RESET session_replication_role');
  } finally {
    c.release();
  }
  await waitFor(() => stage.calls('vlm_analyze', id).length === 1, { timeoutMs: 30_000, message: 'recovered' });
  const run = await db.pool.query(
    `SELECT trigger FROM pipeline_step_runs WHERE job_variants_id = $1 AND step = 'vlm_analyze'`,
    [id],
  );
  t.same(run.rows, [{ trigger: 'recovery' }], 'claimed by recovery, not by a notification');
  t.ok((app.jobStateListener.status().recoveryRuns ?? 0) > runsBefore, 'by a periodic sweep');
  await waitFor(() => jobDone(s.jobId), { timeoutMs: 60_000, message: 'and the chain goes on' });
});

t.test('recovery window: old unfinished rows are not dispatched, recent ones are', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const old = await seedJob(db.pool, {
    variants: 2,
    variantStep: 'planner',
    variantStatus: 'done',
    updatedAt: new Date(Date.now() - 48 * 3600_000),
  });
  const recent = await seedJob(db.pool, { variants: 1, variantStep: 'planner', variantStatus: 'done' });
  const { app } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    recoveryIntervalMs: 300,
    recoveryWindowMs: 86_400_000,
  });
  t.teardown(() => app.close());
  await waitFor(() => (app.jobStateListener.status().recoveryRuns ?? 0) >= 4, {
    timeoutMs: 30_000,
    message: 'several sweeps',
  });
  await waitFor(() => stage.calls('overlay', recent.variantIds[0]).length === 1, { timeoutMs: 30_000 });
  for (const id of old.variantIds) {
    t.equal(stage.calls('overlay', id).length, 0, 'old row not replayed');
    t.match(await variantState(db.pool, id), { current_step: 'planner', status: 'done' });
  }
});

t.test("a job_state_changed event recovers that job's lagging variants at once", async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  // No periodic sweep: only the job channel can find the lagging variant.
  const { app, logs } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    recoveryIntervalMs: 3_600_000,
  });
  t.teardown(() => app.close());
  // The startup sweep has finished (its 'recovery check' line), so only the job channel is left.
  await waitFor(() => logs.some((l) => l.msg === 'recovery check'), { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'overlay', variantStatus: 'running' });
  const id = s.variantIds[0]!;
  const c = await db.pool.connect();
  try {
    await c.query('SET session_replication_role = replica'); // the variant's notification is lost
    await c.query(`UPDATE jobs_variants SET status = 'done', updated_at = now() WHERE job_variants_id = $1`, [id]);
    await c.query('RESET session_replication_role');
  } finally {
    c.release();
  }
  await db.pool.query(`UPDATE jobs SET status = 'running' WHERE job_id = $1`, [s.jobId]);
  await waitFor(() => stage.calls('vlm_judge', id).length === 1, {
    timeoutMs: 30_000,
    message: 'lagging variant recovered',
  });
  t.ok(logs.some((l) => l.msg === '[LISTENER] Job state change detected' && l.job_id === s.jobId));
  await waitFor(() => logs.some((l) => l.msg === 'lagging variants recovered' && l.job_id === s.jobId), {
    timeoutMs: 10_000,
    message: 'a sweep scoped to the job logged it',
  });
  t.pass('recovered by the sweep scoped to that job');
});

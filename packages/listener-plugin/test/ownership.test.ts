// Several instances: each subject has one owner (rendezvous hash over the live
// job_state_listener connections) that claims at once; the others leave it to
// the owner and claim themselves only if it did not move the subject on within
// claimDelayMs. Exactly-once stays the guarded UPDATE's job; ownership saves
// the losing claim statements, and a dead owner costs the delay, not the work.
import { VARIANT_STEPS } from '@feedlyai/pipeline-core';
import pg from 'pg';
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, buildApps, countBy, isJobDone, markImgGenDone, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

t.test('3 instances share the claims: each sees the others, defers what it does not own, nothing twice', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const logs: Array<Array<Record<string, unknown>>> = [];
  const apps = await buildApps(
    t,
    3,
    'owner',
    { connectionString: db.url, stageApiUrl: stage.url, recoveryIntervalMs: 3_600_000, livenessIntervalMs: 200 },
    logs,
  );
  await waitFor(() => apps.every((a) => a.jobStateListener.status().peers === 3), {
    timeoutMs: 30_000,
    message: 'every instance sees 3 listener connections',
  });
  const jobs = [await seedJob(db.pool, { variants: 10 }), await seedJob(db.pool, { variants: 10 })];
  for (const j of jobs) await markImgGenDone(db.pool, j.variantIds);
  await waitFor(async () => (await Promise.all(jobs.map((j) => isJobDone(db.pool, j.jobId)))).every(Boolean), {
    timeoutMs: 90_000,
    message: 'both jobs done',
  });
  const per = countBy(stage.requests, (r) => `${r.jobVariantsId ?? r.jobId}:${r.step}`);
  t.equal(per.size, 20 * VARIANT_STEPS.length + 4, 'every (subject, step) called');
  t.ok(
    [...per.values()].every((n) => n === 1),
    'each exactly once',
  );
  const s = apps.map((a) => a.jobStateListener.status());
  const deferred = s.reduce((n, x) => n + (x.deferred ?? 0), 0);
  const dispatches = s.reduce((n, x) => n + (x.dispatches ?? 0), 0);
  t.equal(dispatches, 20 * VARIANT_STEPS.length + 4, 'dispatch counters add up');
  // Each done notification reaches 3 instances; 2 of them do not own it.
  t.ok(deferred >= dispatches, `non-owners left their notifications to the owner (${deferred} deferred)`);
  t.ok(
    s.every((x) => (x.dispatches ?? 0) > 0),
    `every instance owns some of the work: ${s.map((x) => x.dispatches).join(', ')}`,
  );
  const runs = await db.pool.query('SELECT count(*)::int AS n FROM pipeline_step_runs');
  t.equal(runs.rows[0].n, dispatches, 'one run row per dispatch');
  // A deferred claim dropped before any statement is a debug line (docs/logs.md, "Skips").
  const dropped = logs.flat().filter((l) => l.msg === 'deferred claim dropped: the owner moved the subject on');
  const droppedCount = apps.reduce((n, a) => n + (a.jobStateListener.status().deferredDropped ?? 0), 0);
  t.equal(dropped.length, droppedCount, `one line per dropped deferred claim (${droppedCount})`);
  t.ok(droppedCount > 0, 'the owners moved the subjects on before the delay');
  t.ok(
    dropped.every((l) => l.level === 20),
    'at debug',
  );
});

t.test(
  'a live connection whose instance never claims: its subjects are claimed by the others after the delay',
  async (t) => {
    const stage = await startFakeStage(db.pool);
    t.teardown(() => stage.close());
    // A hung instance: its listener connection is there (so it owns part of the subjects) but it does nothing.
    const zombie = new pg.Client({ connectionString: db.url, application_name: 'job_state_listener' });
    await zombie.connect();
    t.teardown(() => zombie.end());
    await zombie.query('LISTEN job_variant_state_changed');
    const { app } = await buildApp({
      connectionString: db.url,
      stageApiUrl: stage.url,
      instanceId: 'survivor',
      recoveryIntervalMs: 3_600_000,
      claimDelayMs: 100,
    });
    t.teardown(() => app.close());
    await waitFor(() => app.jobStateListener.status().peers === 2, { timeoutMs: 30_000, message: 'sees the zombie' });
    const s = await seedJob(db.pool, { variants: 6 });
    await markImgGenDone(db.pool, s.variantIds);
    await waitFor(() => isJobDone(db.pool, s.jobId), { timeoutMs: 60_000, message: 'job done without the zombie' });
    const st = app.jobStateListener.status();
    t.ok((st.deferredClaims ?? 0) > 0, `claimed after the delay for the silent owner (${st.deferredClaims})`);
    t.equal(st.dispatches, 6 * VARIANT_STEPS.length + 2, 'every step dispatched by the survivor');
    t.equal(st.pendingDeferred, 0, 'nothing left pending');
    // The wait is measured on the claims made at once: the deferred ones (which include the
    // wait itself) must not stretch it, or it grows by a third with every deferred claim.
    const delay = st.claimDelayMs ?? Number.POSITIVE_INFINITY;
    t.ok(delay < 2_000, `the claim delay stays near claimDelayMs (${Math.round(delay)} ms)`);
    const per = countBy(stage.requests, (r) => `${r.jobVariantsId ?? r.jobId}:${r.step}`);
    t.ok(
      [...per.values()].every((n) => n === 1),
      'each exactly once',
    );
  },
);

t.test('claimDelayMs 0: every instance claims at once (the guarded UPDATE alone decides)', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const logs: Array<Array<Record<string, unknown>>> = [];
  const apps = await buildApps(
    t,
    2,
    'eager',
    { connectionString: db.url, stageApiUrl: stage.url, recoveryIntervalMs: 3_600_000, claimDelayMs: 0 },
    logs,
  );
  await waitFor(() => apps.every((a) => a.jobStateListener.status().peers === 2), { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 4 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => isJobDone(db.pool, s.jobId), { timeoutMs: 60_000, message: 'job done' });
  t.equal(
    apps.reduce((n, a) => n + (a.jobStateListener.status().deferred ?? 0), 0),
    0,
    'nothing deferred',
  );
  // Both instances claim every transition; the guarded UPDATE lets one win, the other's statement
  // matches no row and says so at info (docs/logs.md, "Skips").
  const lost = logs.flat().filter((l) => l.msg === 'skipped because the state changed meanwhile');
  t.ok(lost.length > 0, `the losing claim statements are logged (${lost.length})`);
  t.ok(
    lost.every((l) => l.level === 30 && l.http_status === undefined),
    'at info, without a stage answer (no call was made)',
  );
  const per = countBy(stage.requests, (r) => `${r.jobVariantsId ?? r.jobId}:${r.step}`);
  t.ok(
    [...per.values()].every((n) => n === 1),
    'each exactly once',
  );
});

t.test(
  'an owner that goes away: its deferred claims are taken over at the next peer check, not after the delay',
  async (t) => {
    const stage = await startFakeStage(db.pool);
    t.teardown(() => stage.close());
    const zombie = new pg.Client({ connectionString: db.url, application_name: 'job_state_listener' });
    await zombie.connect();
    let zombieOpen = true;
    t.teardown(() => (zombieOpen ? zombie.end() : undefined));
    const { app } = await buildApp({
      connectionString: db.url,
      stageApiUrl: stage.url,
      instanceId: 'heir',
      recoveryIntervalMs: 3_600_000,
      livenessIntervalMs: 200,
      claimDelayMs: 60_000,
    });
    t.teardown(() => app.close());
    await waitFor(() => app.jobStateListener.status().peers === 2, { timeoutMs: 30_000, message: 'sees the zombie' });
    const s = await seedJob(db.pool, { variants: 8 });
    await markImgGenDone(db.pool, s.variantIds);
    await waitFor(() => (app.jobStateListener.status().pendingDeferred ?? 0) > 0, {
      timeoutMs: 30_000,
      message: 'some variants are left to the zombie',
    });
    await zombie.end();
    zombieOpen = false;
    // Far less than the 60 s delay: the peer check notices the zombie is gone.
    await waitFor(() => isJobDone(db.pool, s.jobId), { timeoutMs: 30_000, message: 'job done after the take-over' });
    const st = app.jobStateListener.status();
    t.equal(st.peers, 1, 'alone now');
    t.ok((st.deferredClaims ?? 0) > 0, `took over ${st.deferredClaims} claims`);
    const per = countBy(stage.requests, (r) => `${r.jobVariantsId ?? r.jobId}:${r.step}`);
    t.equal(per.size, 8 * VARIANT_STEPS.length + 2, 'every (subject, step) called');
    t.ok(
      [...per.values()].every((n) => n === 1),
      'each exactly once',
    );
  },
);

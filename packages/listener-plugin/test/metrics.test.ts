// The engine's Prometheus series in a real prom-client Registry (docs/metrics.md):
// counters for dispatches, failures, retries, give-ups and re-dispatches, the
// job-duration histogram observed once per job across instances, the in-flight
// and circuit gauges, Prometheus naming.
import { Registry } from 'prom-client';
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, isJobDone, jobState, markImgGenDone, type SeededJob, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

// Short backoffs (this test's own setting, to keep it fast), but longer than the flight's re-read
// after a 500: a retry claimed before that re-read makes the flight see a later attempt ("moved"),
// and the failure is then not counted by that flight (at the default backoffs, seconds, it cannot).
const fastRetry = { retry: { backoffBaseMs: 400, backoffMaxMs: 800 } };
const overrides = { vlm_analyze: fastRetry, planner: fastRetry };

type Values = Array<{ labels: Record<string, string | number>; value: number; metricName?: string }>;

/** One series' value (the sample named `sample`, default the metric's own name) with these labels. */
async function value(
  registry: Registry,
  metric: string,
  labels: Record<string, string> = {},
  sample = metric,
): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === metric);
  if (!m) throw new Error(`no metric ${metric}`);
  const v = (m.values as Values).find(
    (x) =>
      (x.metricName ?? m.name) === sample && Object.entries(labels).every(([k, want]) => String(x.labels[k]) === want),
  );
  if (!v) throw new Error(`no sample ${sample} ${JSON.stringify(labels)} in ${metric}`);
  return v.value;
}

t.test('counters, histogram and gauges of one instance, against what the stage saw', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const registry = new Registry();
  const { app } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    stepOverrides: overrides,
    metricsRegistry: registry,
    instanceId: 'metrics-one',
  });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  t.equal(await value(registry, 'pipeline_listener_connected'), 1);

  const ok = await seedJob(db.pool, { variants: 1 });
  const retried = await seedJob(db.pool, { variants: 1 });
  const failing = await seedJob(db.pool, { variants: 1 });
  stage.script('vlm_analyze', [{ status: 500 }, { status: 200 }], { subject: retried.variantIds[0] });
  stage.script('planner', [{ status: 500 }], { subject: failing.variantIds[0], repeat: true });
  const started = Date.now();
  await markImgGenDone(db.pool, [...ok.variantIds, ...retried.variantIds, ...failing.variantIds]);
  await waitFor(async () => (await isJobDone(db.pool, ok.jobId)) && (await isJobDone(db.pool, retried.jobId)), {
    timeoutMs: 60_000,
    message: 'two jobs done',
  });
  await waitFor(async () => (await jobState(db.pool, failing.jobId)).status === 'failed', {
    timeoutMs: 60_000,
    message: 'one job failed',
  });
  const elapsedS = (Date.now() - started) / 1000;
  // The histogram is observed after a read of the job row: wait for the three observations.
  await waitFor(
    async () =>
      (await value(
        registry,
        'pipeline_job_duration_seconds',
        { status: 'done' },
        'pipeline_job_duration_seconds_count',
      )) === 2 &&
      (await value(
        registry,
        'pipeline_job_duration_seconds',
        { status: 'failed' },
        'pipeline_job_duration_seconds_count',
      )) === 1,
    { timeoutMs: 10_000, message: 'job durations observed' },
  );
  await waitFor(() => (app.jobStateListener.status().inFlight ?? 1) === 0, { message: 'nothing in flight' });

  const answered = stage.requests.filter((r) => r.status !== undefined);
  t.equal(await value(registry, 'pipeline_dispatches_total'), answered.length, 'one dispatch per stage request');
  t.equal(await value(registry, 'pipeline_step_failures_total'), 4, 'four 500s: one of vlm_analyze, three of planner');
  t.equal(await value(registry, 'pipeline_retries_total'), 3, 'vlm_analyze once, planner twice');
  t.equal(await value(registry, 'pipeline_give_ups_total'), 1, 'planner given up');
  t.equal(await value(registry, 'pipeline_redispatches_total'), 0);
  t.equal(await value(registry, 'pipeline_in_flight'), 0);
  t.equal(await value(registry, 'pipeline_stage_circuit_state', { base_url: stage.url, route: '' }), 0, 'closed');

  const doneSum = await value(
    registry,
    'pipeline_job_duration_seconds',
    { status: 'done' },
    'pipeline_job_duration_seconds_sum',
  );
  t.ok(doneSum > 0 && doneSum <= 2 * (elapsedS + 5), `the two done jobs took ${doneSum.toFixed(2)} s together`);
  t.equal(
    await value(
      registry,
      'pipeline_job_duration_seconds',
      { status: 'done', le: '+Inf' },
      'pipeline_job_duration_seconds_bucket',
    ),
    2,
  );

  const text = await registry.metrics();
  t.match(text, /^# TYPE pipeline_job_duration_seconds histogram$/m);
  t.match(text, /^pipeline_job_duration_seconds_bucket\{le="60",status="done"\} 2$/m, 'seconds, in buckets');
  t.notMatch(text, /job_state_listener_status/, 'no single status gauge with a field label');
  for (const m of await registry.getMetricsAsJSON()) {
    t.match(m.name, /^pipeline_[a-z_]+$/, `${m.name}: one prefix, snake case`);
    if (String(m.type) === 'counter') t.match(m.name, /_total$/, `${m.name}: a counter ends in _total`);
    else t.notMatch(m.name, /_total$/, `${m.name}: only counters end in _total`);
  }
});

t.test("a job's duration is observed once, by the instance that saw its final transition", async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const registries = [new Registry(), new Registry()];
  const apps = [];
  for (const [i, registry] of registries.entries()) {
    const { app } = await buildApp({
      connectionString: db.url,
      stageApiUrl: stage.url,
      stepOverrides: overrides,
      metricsRegistry: registry,
      instanceId: `metrics-pair-${i}`,
      claimDelayMs: 0,
    });
    t.teardown(() => app.close());
    apps.push(app);
  }
  for (const app of apps) await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const seen = apps.map(() => new Set<string>());
  for (const [i, app] of apps.entries()) {
    app.jobStateListener.on('job:done', (e) => {
      seen[i]?.add(e.jobId);
    });
  }
  const jobs: SeededJob[] = [];
  for (let i = 0; i < 4; i++) jobs.push(await seedJob(db.pool, { variants: 2 }));
  const failing = await seedJob(db.pool, { variants: 1 });
  stage.script('planner', [{ status: 500 }], { subject: failing.variantIds[0], repeat: true });
  await markImgGenDone(db.pool, [...jobs.flatMap((j) => j.variantIds), ...failing.variantIds]);
  for (const j of jobs) await waitFor(() => isJobDone(db.pool, j.jobId), { timeoutMs: 60_000, message: 'jobs done' });
  await waitFor(async () => (await jobState(db.pool, failing.jobId)).status === 'failed', {
    timeoutMs: 60_000,
    message: 'one job failed',
  });
  const count = async (status: string) => {
    let n = 0;
    for (const r of registries) {
      n += await value(r, 'pipeline_job_duration_seconds', { status }, 'pipeline_job_duration_seconds_count');
    }
    return n;
  };
  await waitFor(async () => (await count('done')) === 4 && (await count('failed')) === 1, {
    timeoutMs: 10_000,
    message: 'five observations',
  });
  // Both instances received every job's final notification: neither observes on it.
  await waitFor(() => seen.every((ids) => jobs.every((j) => ids.has(j.jobId))), {
    timeoutMs: 10_000,
    message: 'both instances saw every job:done',
  });
  t.equal(await count('done'), 4, 'four done jobs, four observations across both instances');
  t.equal(await count('failed'), 1, 'one failed job, one observation');
  let dispatches = 0;
  for (const r of registries) dispatches += await value(r, 'pipeline_dispatches_total');
  t.equal(dispatches, stage.requests.filter((r) => r.status !== undefined).length, 'every stage request counted once');
});

t.test('re-dispatches of a stopped instance are counted by the peer that took them over', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  await stage.down(); // the first instance claims but cannot deliver: its claims stay queued
  const { app: first } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    instanceId: 'metrics-stopped',
  });
  await waitFor(() => first.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const job = await seedJob(db.pool, { variants: 2 });
  await markImgGenDone(db.pool, job.variantIds);
  const queuedBy = async (id: string) =>
    (
      await db.pool.query(
        `SELECT count(*)::int AS n FROM jobs_variants WHERE job_id = $1 AND status = 'queued' AND claimed_by = $2`,
        [job.jobId, id],
      )
    ).rows[0].n;
  await waitFor(async () => (await queuedBy('metrics-stopped')) === 2, {
    timeoutMs: 30_000,
    message: 'both variants claimed',
  });
  await first.close();
  const registry = new Registry();
  const { app: peer } = await buildApp({
    connectionString: db.url,
    stageApiUrl: stage.url,
    metricsRegistry: registry,
    instanceId: 'metrics-peer',
  });
  t.teardown(() => peer.close());
  await stage.up();
  await waitFor(() => isJobDone(db.pool, job.jobId), { timeoutMs: 60_000, message: 'job done' });
  t.equal(await value(registry, 'pipeline_redispatches_total'), 2, 'both queued variants taken over');
  await waitFor(
    async () =>
      (await value(
        registry,
        'pipeline_job_duration_seconds',
        { status: 'done' },
        'pipeline_job_duration_seconds_count',
      )) === 1,
    { timeoutMs: 10_000, message: 'observed by the peer' },
  );
});

t.test('one listener per registry: a second one is refused with a clear error', async (t) => {
  const registry = new Registry();
  const { app } = await buildApp({ connectionString: db.url, metricsRegistry: registry, instanceId: 'metrics-a' });
  t.teardown(() => app.close());
  await t.rejects(
    buildApp({ connectionString: db.url, metricsRegistry: registry, instanceId: 'metrics-b' }),
    /metricsRegistry already holds the pipeline_\* series of another listener/,
  );
});

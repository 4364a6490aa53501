/**
 * The stage server hosting @feedlyai/listener-plugin: one process runs the
 * whole pipeline from (img_gen, done) to (instagram_feed_gen, done); with
 * ENABLE_JOB_STATE_LISTENER=false it registers, opens nothing and says so.
 */
import t from 'tap';
import { freePort } from '@feedlyai/test-helpers';
import { jobState, seedJob, tempStorage, testApp, testDb, waitFor } from './helpers.js';

t.test('hosted listener drives a job through every stage', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const port = await freePort();
  const app = await testApp(t, db, storage, {
    port,
    token: 'hosted-token',
    cpuWorkers: 1,
    listener: { connectionString: db.url, recoveryIntervalMs: 2000, reconnectDelayMs: 200, closeGraceMs: 2000 },
  });
  await app.listen({ host: '127.0.0.1', port });
  const job = await seedJob(db.pool, { imageUrl: 'inputs/coffee.png', variants: 2, taglineKor: '오늘의 핸드드립' });
  await waitFor(() => app.jobStateListener.status().connected, { message: 'listener connected' });
  for (const id of job.variantIds) {
    await db.pool.query(
      `UPDATE jobs_variants SET current_step = 'img_gen', status = 'done' WHERE job_variants_id = $1`,
      [id],
    );
  }
  const done = await waitFor(
    async () => {
      const s = await jobState(db.pool, job.jobId);
      if (s.status === 'failed') throw new Error(`job failed: ${s.last_error ?? s.failure_reason}`);
      return s.current_step === 'instagram_feed_gen' && s.status === 'done' ? s : null;
    },
    { timeoutMs: 240_000, intervalMs: 200, message: 'job complete' },
  );
  t.match(done, { current_step: 'instagram_feed_gen', status: 'done' });
  const feed = await db.pool.query('SELECT caption, hashtags FROM stage_instagram_feeds WHERE job_id = $1', [
    job.jobId,
  ]);
  t.equal(feed.rows.length, 1, 'one Instagram post');
  const variants = await db.pool.query(
    `SELECT count(*)::int AS n FROM jobs_variants WHERE job_id = $1 AND current_step = 'iou_eval' AND status = 'done'`,
    [job.jobId],
  );
  t.equal(variants.rows[0].n, 2);
  const runs = await db.pool.query('SELECT count(*)::int AS n FROM stage_overlays WHERE job_id = $1', [job.jobId]);
  t.equal(runs.rows[0]?.n, 2, 'each variant rendered once');
  const m = await app.inject({ method: 'GET', url: '/metrics' });
  t.match(m.body, /^pipeline_listener_connected 1$/m, "the listener's series in /metrics (docs/metrics.md)");
  t.match(m.body, /^pipeline_dispatches_total \d+$/m);
  t.match(m.body, /^# TYPE pipeline_dispatches_total counter$/m);
  t.match(
    m.body,
    /^pipeline_stage_circuit_state\{base_url="http:\/\/127\.0\.0\.1:\d+",route=""\} 0$/m,
    'the circuit gauge',
  );
  const h = await app.inject({ method: 'GET', url: '/healthz' });
  t.match(h.json(), { listener: { hosted: true, status: { enabled: true, connected: true } } });
});

t.test('ENABLE_JOB_STATE_LISTENER=false: hosted, nothing opened, says so', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage, {
    env: { ENABLE_JOB_STATE_LISTENER: 'false' },
    listener: { connectionString: db.url },
  });
  t.equal(app.jobStateListener.status().enabled, false);
  const h = await app.inject({ method: 'GET', url: '/healthz' });
  t.match(h.json(), { listener: { hosted: true, status: { enabled: false } } });
  const conns = await db.pool.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE application_name = 'job_state_listener' AND datname = current_database()`,
  );
  t.equal(conns.rows[0].n, 0, 'no LISTEN connection');
});

// Exactly once across instances: 4 plugin instances (each its own LISTEN
// connection, pool and engine) see every notification; every (variant, step)
// and every job-level step is called exactly once.
import { VARIANT_STEPS } from '@feedlyai/pipeline-core';
import pg from 'pg';
import t, { type Test } from 'tap';
import type { SeededJob } from '@feedlyai/test-helpers';
import { startFakeStage } from './fake-stage.js';
import { buildApps, isJobDone, countBy, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

t.test('4 instances, 200 variants: every (variant, step) once, job-level steps once per job', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const apps = await buildApps(t, 4, 'instance', {
    connectionString: db.url,
    stageApiUrl: stage.url,
    recoveryIntervalMs: 1000,
    poolMax: 4,
  });
  await waitFor(() => apps.every((a) => a.jobStateListener.status().connected), { timeoutMs: 30_000 });
  const jobs: SeededJob[] = [];
  for (let j = 0; j < 4; j++) jobs.push(await seedJob(db.pool, { variants: 50 }));
  // All 200 variants at img_gen/done in one statement: 200 notifications at once, seen by 4 instances.
  await db.pool.query(
    `UPDATE jobs_variants SET current_step = 'img_gen', status = 'done' WHERE job_id = ANY($1::uuid[])`,
    [jobs.map((j) => j.jobId)],
  );
  await waitFor(
    async () => {
      const r = await db.pool.query(
        `SELECT count(*)::int AS n FROM jobs WHERE job_id = ANY($1::uuid[]) AND current_step = 'instagram_feed_gen' AND status = 'done'`,
        [jobs.map((j) => j.jobId)],
      );
      return r.rows[0].n === 4;
    },
    { timeoutMs: 150_000, intervalMs: 200, message: 'all 4 jobs done' },
  );
  const variantCalls = stage.requests.filter((r) => r.jobVariantsId);
  t.equal(variantCalls.length, 200 * VARIANT_STEPS.length, '1600 variant stage calls');
  const per = countBy(variantCalls, (r) => `${r.jobVariantsId}:${r.step}`);
  t.equal(per.size, 200 * VARIANT_STEPS.length, 'every (variant, step) called');
  t.ok(
    [...per.values()].every((n) => n === 1),
    'each exactly once',
  );
  const jobCalls = countBy(
    stage.requests.filter((r) => !r.jobVariantsId),
    (r) => `${r.jobId}:${r.step}`,
  );
  t.equal(jobCalls.size, 8, 'ad_copy_gen_kor and instagram_feed_gen for each of 4 jobs');
  t.ok(
    [...jobCalls.values()].every((n) => n === 1),
    'each job-level step exactly once',
  );
  t.ok(
    stage.requests.every((r) => r.status === 200),
    'no 409: no duplicate ever reached the stage',
  );
  const byInstance = await db.pool.query('SELECT instance_id, count(*)::int AS n FROM pipeline_step_runs GROUP BY 1');
  t.ok(byInstance.rows.length >= 2, `work spread over instances: ${JSON.stringify(byInstance.rows)}`);
  const totalDispatches = apps.reduce((n, a) => n + (a.jobStateListener.status().dispatches ?? 0), 0);
  t.equal(totalDispatches, 200 * VARIANT_STEPS.length + 8, 'dispatch counters add up');
});

async function fanIn(t: Test, oneTransaction: boolean) {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const apps = await buildApps(t, 2, 'fan', { connectionString: db.url, stageApiUrl: stage.url });
  await waitFor(() => apps.every((a) => a.jobStateListener.status().connected), { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 50, variantStep: 'readability_eval', variantStatus: 'running' });
  if (oneTransaction) {
    await db.pool.query(`UPDATE jobs_variants SET current_step = 'iou_eval', status = 'done' WHERE job_id = $1`, [
      s.jobId,
    ]);
  } else {
    const wide = new pg.Pool({ connectionString: db.url, max: 55 });
    // end() resolves before the sockets close; the database's DROP ... WITH (FORCE) must not crash the process.
    wide.on('error', () => {});
    const clients = await Promise.all(s.variantIds.map(() => wide.connect()));
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          await c.query('BEGIN');
          await c.query(
            `UPDATE jobs_variants SET current_step = 'iou_eval', status = 'done' WHERE job_variants_id = $1`,
            [s.variantIds[i]],
          );
        }),
      );
      await Promise.all(clients.map((c) => c.query('COMMIT')));
    } finally {
      for (const c of clients) c.release();
      await wide.end();
    }
  }
  await waitFor(() => isJobDone(db.pool, s.jobId), {
    timeoutMs: 60_000,
    message: 'job done',
  });
  t.equal(stage.calls('ad_copy_gen_kor', s.jobId).length, 1, 'ad_copy_gen_kor called once');
  t.equal(stage.calls('instagram_feed_gen', s.jobId).length, 1, 'instagram_feed_gen called once');
  const runs = await db.pool.query(
    `SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1 AND step = 'ad_copy_gen_kor'`,
    [s.jobId],
  );
  t.equal(runs.rows[0].n, 1, 'one claim logged');
}

t.test('50 variants reach iou_eval/done in one transaction: ad_copy_gen_kor once', async (t) => fanIn(t, true));
t.test('50 variants reach iou_eval/done in 50 concurrent transactions: ad_copy_gen_kor once', async (t) =>
  fanIn(t, false),
);

/**
 * Throughput (docs/dashboard.md, "Throughput") from the run log on a real
 * PostgreSQL: 60 one-minute buckets ending with the current minute; a step is
 * a run that succeeded, a failure one that failed, was rejected or timed out;
 * conflicts and runs not finished or finished over an hour ago count nowhere.
 */
import t from 'tap';
import { buildApp, seedJob, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url });
t.teardown(() => app.close());

t.test('steps and failures per minute for the last hour', async (t) => {
  const s = await seedJob(db.pool, { variants: 1 });
  const runs: Array<[string, number | null]> = [
    ['succeeded', 0],
    ['succeeded', 0],
    ['failed', 0],
    ['succeeded', 5],
    ['rejected', 5],
    ['timeout', 5],
    ['conflict', 5],
    ['dispatched', null],
    ['succeeded', 75],
  ];
  for (const [state, minutesAgo] of runs) {
    await db.pool.query(
      `INSERT INTO pipeline_step_runs (job_id, job_variants_id, step, attempt, trigger, state, instance_id, claimed_at, finished_at)
       VALUES ($1, $2, 'planner', 1, 'notify', $3, 'i', now() - interval '2 hours',
               CASE WHEN $4::int IS NULL THEN NULL ELSE date_trunc('minute', now()) - make_interval(mins => $4::int) + interval '10 seconds' END)`,
      [s.jobId, s.variantIds[0], state, minutesAgo],
    );
  }
  const res = await app.inject({ url: '/pipeline/throughput' });
  t.equal(res.statusCode, 200);
  const tp = res.json() as { minutes: number[]; steps: number[]; failures: number[] };
  t.equal(tp.minutes.length, 60, 'sixty minutes');
  t.equal(tp.steps.length, 60);
  t.ok(
    tp.minutes.every((m, i) => i === 0 || m - (tp.minutes[i - 1] as number) === 60),
    'one a minute, oldest first',
  );
  t.same([tp.steps.at(-1), tp.failures.at(-1)], [2, 1], 'the current minute: 2 steps, 1 failure');
  t.same(
    [tp.steps.at(-6), tp.failures.at(-6)],
    [1, 2],
    'five minutes ago: rejected and timed out are failures, a conflict neither',
  );
  t.equal(
    tp.steps.reduce((a, b) => a + b, 0),
    3,
    'the run finished 75 minutes ago and the open one count nowhere',
  );
  t.equal(
    tp.failures.reduce((a, b) => a + b, 0),
    3,
  );
});

/**
 * The chaos suite. Reduced by default (CI: 60 jobs x 3 variants, under 5
 * minutes); CHAOS_FULL=1 (`pnpm test:chaos`) runs 500 jobs x 3 variants.
 * Counted in the stage double: every (variant, step) and (job, step)
 * answered below 500 exactly once.
 */
import t from 'tap';
import { chaosSizes, runChaos } from '../src/chaos.js';

const full = process.env.CHAOS_FULL === '1';

t.test(`chaos: ${full ? 'full' : 'reduced'} run, every job done, every step accepted exactly once`, async (t) => {
  const size = chaosSizes(full);
  const r = await runChaos({ ...size, log: (line) => t.comment(line) });
  t.comment(
    JSON.stringify({
      jobs: r.jobs,
      jobsDone: r.jobsDone,
      expectedPairs: r.expectedPairs,
      missing: r.missing.length,
      duplicates: r.duplicates.length,
      doubleExecutions: r.doubleExecutions,
      totals: r.totals,
      faults: r.faults,
      lastFaultToLastJobDoneMs: r.lastFaultToLastJobDoneMs,
      totalSeconds: r.totalSeconds,
    }),
  );
  for (const d of r.duplicates.slice(0, 5)) t.comment(`duplicate ${d.key}: ${JSON.stringify(d.history)}`);
  t.equal(r.jobsDone, r.jobs, 'every job reached instagram_feed_gen/done');
  t.ok(r.faults.connectionKillRounds >= 2, 'listener connections were killed repeatedly');
  t.ok(r.faults.connectionsKilled >= r.faults.connectionKillRounds, 'each round killed connections');
  t.equal(r.faults.sigkills, 1, 'one instance was SIGKILLed and restarted');
  t.equal(r.faults.pgRestarts, 1, 'PostgreSQL was restarted once');
  t.ok((r.totals[500] ?? 0) > 0, 'the double injected 500s');
  t.same(r.missing.slice(0, 10), [], 'no (subject, step) is missing at the stage');
  t.same(r.duplicates.slice(0, 10), [], 'no (subject, step) was accepted twice at the stage');
  t.equal(r.doubleExecutions, 0, 'no step ran twice');
});

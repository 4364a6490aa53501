/**
 * The chaos suite (docs/chaos.md): the four scenarios, every engine setting at
 * its default, PostgreSQL durable. CI sizes by default (faults with 40 jobs,
 * a 10-s outage and a 10-s rotation with 20 jobs, the backlog with 40);
 * CHAOS_FULL=1 the full ones (500 jobs, 7-min outage, 60-s rotation, 100). CHAOS_SCENARIO=outage (or a
 * comma-separated list) runs only those.
 *
 * Asserted: every job done, none failed; at the stage double exactly one 2xx
 * and no 409 per (subject, step); in the run log 1 attempt per step (2 where
 * the double injected its one recorded 500); everything done within a generous
 * bound of the scenario's reference moment. The timed targets (15 s, 10 s,
 * 75 s) are printed with the figures, not asserted.
 */
import t from 'tap';
import { chaosSizes, parseScenarios, runChaos, summary } from '../src/chaos.js';

const full = process.env.CHAOS_FULL === '1';
const scenarios = parseScenarios(process.env.CHAOS_SCENARIO);

for (const scenario of scenarios) {
  t.test(`chaos ${scenario} (${full ? 'full' : 'CI'} size, engine defaults, durable PostgreSQL)`, async (t) => {
    const o = chaosSizes(scenario, full);
    const r = await runChaos({ ...o, log: (line) => t.comment(line) });
    t.comment(JSON.stringify(summary(r)));
    const v = r.verdict;
    for (const d of v.duplicateSample) t.comment(`duplicate or 409 ${d.key}: ${JSON.stringify(d.history)}`);
    for (const x of v.attempts.violationSample) t.comment(`attempts ${JSON.stringify(x)}`);

    t.equal(r.durability, 'default (fsync on)', 'PostgreSQL at its default durability');
    t.same(r.instanceCrashes, [], 'no listener instance crashed');
    t.equal(r.jobsFailed, 0, 'no job failed');
    t.equal(r.jobsDone, r.jobs, 'every job reached instagram_feed_gen/done');
    const bound = o.settleMs;
    t.ok(
      r.headline.ms !== null && r.headline.ms <= bound,
      `${r.headline.measure}: within ${bound / 1000} s (${r.headline.ms} ms; target ${r.headline.targetMs} ms)`,
    );
    t.equal(v.missing, 0, 'every (subject, step) answered 2xx');
    t.equal(v.duplicates, 0, 'no (subject, step) answered 2xx twice');
    t.equal(v.conflicts, 0, 'no 409 at the stage');
    t.equal(v.attempts.notInRunLog, 0, 'every (subject, step) is in the run log');
    t.equal(v.attempts.violations, 0, 'attempts used: 1 per step, 2 only where a recorded 500 was injected');

    const d = r.details;
    if (scenario === 'faults') {
      const f = d.faults as {
        connectionKillRounds: number;
        connectionsKilled: number;
        sigkills: number;
        pgRestarts: number;
      };
      t.ok(f.connectionKillRounds >= 2, 'listener connections were killed repeatedly');
      t.ok(f.connectionsKilled > 0, 'the kills found connections');
      t.equal(f.sigkills, 1, 'one instance was SIGKILLed and replaced');
      t.equal(f.pgRestarts, 1, 'PostgreSQL was restarted once');
      t.ok(v.injectedPairs > 0, 'the double injected recorded 500s');
    } else if (scenario === 'outage' || scenario === 'rotation') {
      t.ok((d.jobsDoneBefore as number) < r.jobs, 'the jobs were in flight when the service went away');
      t.equal(v.injectedPairs, 0, 'no failure injected');
      if (scenario === 'rotation') t.ok((d.answered401 as number) > 0, 'requests were answered 401');
    } else {
      t.equal(d.parkedUnchanged, true, 'the parked backlog was not touched');
      t.equal(d.parkedRequests, 0, 'no stage request for the parked backlog');
    }
  });
}

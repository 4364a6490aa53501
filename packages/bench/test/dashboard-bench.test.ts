/**
 * Smoke test of `pnpm bench -- --only dashboard --quick`: the dashboard's jobs
 * page measured at 20,000 jobs, first and next page of each filter, every
 * page answered. The figures at 1,000,000 jobs come from the full run
 * (docs/benchmarks.md, "Dashboard pages"); none is asserted here.
 */
import t from 'tap';
import { runBenchmarks } from '../src/cli.js';
import { renderMarkdown } from '../src/report.js';

t.test('bench --only dashboard --quick', async (t) => {
  const r = await runBenchmarks({
    only: ['dashboard'],
    quick: true,
    processes: [1],
    out: null,
    log: (l) => t.comment(l),
  });
  t.same(r.errors, [], 'the benchmark ran');
  const d = r.dashboard;
  t.ok(d, 'measured');
  if (!d) return;
  t.equal(d.jobs, 20_000);
  t.equal(d.pages.length, 9, 'every filter');
  for (const p of d.pages) {
    t.equal(p.first.n, 5, `${p.filter}: five samples of the first page`);
    t.ok(p.first.p50 > 0 && p.first.p50 <= p.first.max, `${p.filter}: timings`);
  }
  t.ok(d.pages.filter((p) => p.rows === 50 && p.next).length >= 6, 'most filters have a next page to measure');
  t.match(renderMarkdown(r), /## Dashboard pages/);
});

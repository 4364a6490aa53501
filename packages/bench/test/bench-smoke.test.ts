/**
 * Smoke test of `pnpm bench --quick`: every benchmark runs end to end on
 * small sizes and its figures are sane (CI). The real figures come from the
 * full run (`pnpm bench`).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runBenchmarks } from '../src/cli.js';
import { renderMarkdown } from '../src/report.js';

t.test('bench --quick: latency, chain (ours, naive, Graphile Worker), recovery, stage', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'feedly-bench-smoke-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const r = await runBenchmarks({
    only: ['latency', 'chain', 'recovery', 'stage'],
    quick: true,
    processes: [2],
    out,
    log: (line) => t.comment(line),
  });
  t.same(r.errors, [], 'no benchmark failed');
  t.equal(r.durability, 'default (fsync on)', 'PostgreSQL at its default durability, said in the results');

  const l = r.latency;
  t.ok(l, 'latency measured');
  if (l) {
    t.equal(l.trigger.n, 20, '20 trigger samples');
    t.ok(l.trigger.p50 > 0 && l.trigger.p50 <= l.trigger.p99, 'percentiles ordered');
    t.ok(l.floor.p50 > 0 && l.floor.p50 < l.trigger.p50, 'the NOTIFY floor is below the trigger latency');
    t.equal(l.naive?.trigger.n, 20, "the naive dispatcher's 20 samples beside ours");
  }

  const c = r.chain;
  t.ok(c, 'chain measured');
  if (c) {
    t.equal(c.runs.length, 3, 'three systems (ours, naive, Graphile Worker), two processes each');
    for (const run of c.runs) {
      t.equal(run.steps, 10 * (4 * 8 + 2), `${run.system} x${run.processes}: every step counted`);
      t.equal(run.duplicates, 0, `${run.system} x${run.processes}: no duplicate at the stage`);
      t.equal(run.missing, 0, `${run.system} x${run.processes}: nothing missing at the stage`);
      t.ok(run.stepsPerSecond > 0, `${run.system} x${run.processes}: throughput`);
    }
    t.equal(c.comparison.length, 1);
    for (const x of c.comparison) {
      t.ok(x.ratio > 0, `ratio to Graphile Worker for ${x.processes} process(es)`);
      t.ok(x.naiveRatio > 0, `ratio to the naive dispatcher for ${x.processes} process(es)`);
    }
  }

  const rec = r.recovery;
  t.ok(rec?.reconnect, 'reconnect measured');
  t.equal(rec?.reconnect?.variants, 60, 'every missed transition dispatched (15 jobs of 4)');
  t.ok(
    (rec?.reconnect?.firstDispatchMs ?? -1) >= 0,
    'the missed transitions were dispatched after the reconnect, not by the killed connection',
  );
  t.ok(rec?.sweep, 'sweep measured');
  t.equal(rec?.sweep?.variants, 20_000);
  t.ok(rec?.sweep?.plans.length, 'the sweep statements were explained');
  t.equal(rec?.sweep?.noSeqScan, true, 'no Seq Scan on jobs / jobs_variants');

  const st = r.stage;
  t.ok(st, 'stage measured');
  if (st) {
    t.equal(st.steps.length, 10, 'ten stages on one photo');
    t.ok(
      st.steps.every((s) => s.status === 200),
      `every stage answered 200 (${st.steps.map((s) => s.status).join(',')})`,
    );
    t.match(st.endToEnd, { variants: 3, status: 'instagram_feed_gen/done' }, 'a 3-variant job end to end');
  }

  const md = renderMarkdown(r);
  t.match(md, /Trigger latency/);
  t.match(md, /Graphile Worker/);
  const saved = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8'));
  t.equal(saved.quick, true, 'results written');
});

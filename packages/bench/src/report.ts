/** The markdown rendering of a benchmark run. */
import type { ChainResult } from './chain.js';
import type { DashboardBenchResult } from './dashboard.js';
import type { LatencyResult } from './latency.js';
import type { MachineInfo } from './machine.js';
import type { ReconnectResult, SweepResult } from './recovery.js';
import type { StageBenchResult } from './stage.js';
import type { Percentiles } from './stats.js';

export interface BenchResults {
  quick: boolean;
  /** PostgreSQL's durability in this run: the default (fsync on). */
  durability: string;
  machine: MachineInfo;
  /** Load average when the run started and ended. */
  load: { before: number[]; after: number[] };
  durationSeconds: number;
  latency?: LatencyResult;
  chain?: ChainResult;
  recovery?: { reconnect?: ReconnectResult; sweep?: SweepResult };
  stage?: StageBenchResult;
  dashboard?: DashboardBenchResult;
  errors: { benchmark: string; error: string }[];
}

const row = (cells: readonly (string | number | null | undefined)[]) =>
  `| ${cells.map((c) => (c === null || c === undefined ? '' : String(c))).join(' | ')} |`;

/**
 * Pads every table the way the repository's formatter (Biome) writes markdown
 * tables, so that a committed results file passes `pnpm lint`: each column as
 * wide as its widest cell (at least 3), right-aligned columns padded on the left.
 */
export function alignTables(md: string): string {
  const lines = md.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; ) {
    if (!(lines[i] as string).startsWith('|')) {
      out.push(lines[i] as string);
      i++;
      continue;
    }
    const block: string[][] = [];
    while (i < lines.length && (lines[i] as string).startsWith('|')) {
      block.push(
        (lines[i] as string)
          .slice(1, -1)
          .split('|')
          .map((c) => c.trim()),
      );
      i++;
    }
    const sep = block[1] ?? [];
    const right = sep.map((c) => c.endsWith(':'));
    const widths = sep.map((_, col) =>
      Math.max(3, ...block.filter((_, r) => r !== 1).map((cells) => [...(cells[col] ?? '')].length)),
    );
    block.forEach((cells, r) => {
      const rendered = widths.map((w, col) => {
        if (r === 1) return right[col] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w);
        const c = cells[col] ?? '';
        const pad = ' '.repeat(w - [...c].length);
        return right[col] ? pad + c : c + pad;
      });
      out.push(`| ${rendered.join(' | ')} |`);
    });
  }
  return out.join('\n');
}

function pctRow(name: string, p: Percentiles): string {
  return row([name, p.n, p.p50, p.p90, p.p99, p.max]);
}

export function renderMarkdown(r: BenchResults): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`# Benchmark results${r.quick ? ' (quick mode: small sizes, not comparable)' : ''}`);
  out.push('');
  out.push(
    `Taken ${m.at} on ${m.nproc} × ${m.cpuModel}, Node ${m.node}, PostgreSQL ${m.postgres} (embedded, durability ${r.durability}). ` +
      `Load average before: ${r.load.before.join(' / ')}, after: ${r.load.after.join(' / ')}. ` +
      `Whole run: ${r.durationSeconds} s.`,
  );
  if (r.latency) {
    const l = r.latency;
    out.push('', '## Trigger latency (ms)', '');
    out.push(row(['measure', 'n', 'p50', 'p90', 'p99', 'max']));
    out.push(row(['---', '---:', '---:', '---:', '---:', '---:']));
    out.push(pctRow('UPDATE (img_gen,done) sent → vlm_analyze request at the stage', l.trigger));
    out.push(pctRow('in-chain hop: stage (S,done) UPDATE sent → next request', l.hops));
    out.push(pctRow('fan-in hop: last iou_eval done → ad_copy_gen_kor request', l.fanInHop));
    if (l.naive) {
      out.push(pctRow('naive dispatcher: (img_gen,done) UPDATE → vlm_analyze request', l.naive.trigger));
      out.push(pctRow('naive dispatcher: hops inside the chains', l.naive.hops));
    }
    out.push(pctRow('floor: raw NOTIFY round trip (LISTEN/NOTIFY, two connections)', l.floor));
  }
  if (r.chain) {
    const c = r.chain;
    out.push('', '## Chain throughput: ours vs a naive dispatcher vs Graphile Worker 0.17.3', '');
    out.push(
      row([
        'processes',
        'ours steps/s',
        'naive steps/s',
        'Graphile steps/s',
        'ours / naive',
        'ours / Graphile',
        'hop p50 ours (ms)',
        'hop p50 naive (ms)',
      ]),
    );
    out.push(row(['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const x of c.comparison) {
      out.push(
        row([
          x.processes,
          x.feedlyStepsPerSecond,
          x.naiveStepsPerSecond,
          x.graphileStepsPerSecond,
          `${x.naiveRatio}×`,
          `${x.ratio}×`,
          x.feedlyHopP50Ms,
          x.naiveHopP50Ms,
        ]),
      );
    }
    out.push('', 'Per run (profile from pg_stat_statements / pg_stat_database; CPU seconds by process group):', '');
    out.push(
      row([
        'system',
        'processes',
        'steps',
        'steps/s',
        'hop p50 / p99 (ms)',
        'statements/step',
        'commits/step',
        'duplicates',
        'missing',
        'machine CPU busy',
        'worker CPU s',
        'double CPU s',
      ]),
    );
    out.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const x of c.runs) {
      out.push(
        row([
          x.system === 'feedly' ? 'ours' : x.system === 'naive' ? 'naive dispatcher' : 'Graphile Worker',
          x.processes,
          x.steps,
          x.stepsPerSecond,
          `${x.hopLatency.p50} / ${x.hopLatency.p99}`,
          x.profile.statementsPerStep,
          x.profile.commitsPerStep,
          x.duplicates,
          x.missing,
          x.machineCpuBusy === null ? 'n/a' : `${Math.round(x.machineCpuBusy * 100)} %`,
          x.workerCpuSeconds,
          x.doubleCpuSeconds,
        ]),
      );
    }
  }
  if (r.recovery) {
    out.push('', '## Recovery', '');
    const rc = r.recovery.reconnect;
    if (rc) {
      out.push(
        `- Reconnect: ${rc.variants} variants made done while the listener's connection was down. ` +
          `Reconnected ${rc.reconnectAfterMs} ms after the kill; first missed transition at the stage ` +
          `${rc.firstDispatchMs} ms after the reconnect, all ${rc.variants} after **${rc.allDispatchedMs} ms**.`,
      );
    }
    const s = r.recovery.sweep;
    if (s) {
      out.push(
        `- Sweep over ${s.variants.toLocaleString('en')} finished variants (${s.jobs.toLocaleString('en')} jobs, ` +
          `seeded in ${s.seedSeconds} s): first sweep ${s.firstSweepMs} ms, then **${s.sweepMs} ms** (best of repeats); ` +
          `rows returned: ${s.scanned}. No Seq Scan on jobs/jobs_variants: **${s.noSeqScan ? 'yes' : 'NO'}**.`,
      );
      out.push('', '  Plans (auto_explain, ANALYZE) of the sweep statements:');
      for (const p of s.plans) {
        out.push(`  - \`${p.query.slice(0, 90)}…\` (${p.durationMs} ms): ${p.nodes.join(' → ')}`);
      }
    }
  }
  if (r.stage) {
    const st = r.stage;
    out.push('', '## Stage server (CPU fallbacks)', '');
    out.push(row(['photo', 'step', 'HTTP', 'wall ms', 'CPU ms (process)']));
    out.push(row(['---', '---', '---:', '---:', '---:']));
    for (const x of st.steps) out.push(row([x.photo, x.step, x.status, x.wallMs, x.cpuMs]));
    if (st.endToEnd) {
      const e = st.endToEnd;
      out.push(
        '',
        `End to end, one ${e.variants}-variant job (photo ${e.photo}) with the stage server and the listener hosted ` +
          `in one process: **${e.seconds} s** to instagram_feed_gen/done (${e.status}).`,
      );
    }
  }
  if (r.dashboard) {
    const d = r.dashboard;
    out.push('', '## Dashboard pages', '');
    out.push(
      `The jobs page at ${d.jobs.toLocaleString('en')} jobs (${d.variants.toLocaleString('en')} variants, seeded in ` +
        `${d.seedSeconds} s): one whole page (query, row details, HTML) per sample, ${d.samples} samples after ` +
        `3 warm-ups. Target ${d.targetMs} ms per page; every p50 within it: **${d.withinTarget ? 'yes' : 'NO'}**.`,
      '',
    );
    out.push(
      row([
        'filter',
        'rows',
        'first page p50 / p90 / max (ms)',
        'next page p50 / p90 / max (ms)',
        'first page as JSON p50 (ms)',
      ]),
    );
    out.push(row(['---', '---:', '---:', '---:', '---:']));
    const f = (p: { p50: number; p90: number; max: number } | null) => (p ? `${p.p50} / ${p.p90} / ${p.max}` : '');
    for (const p of d.pages) out.push(row([p.filter, p.rows, f(p.first), f(p.next), p.firstJson.p50]));
  }
  if (r.errors.length) {
    out.push('', '## Errors', '');
    for (const e of r.errors) out.push(`- ${e.benchmark}: ${e.error}`);
  }
  out.push('');
  return alignTables(out.join('\n'));
}

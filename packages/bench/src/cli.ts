/**
 * `pnpm bench`: runs the benchmarks, prints JSON and a markdown table, and
 * writes results/latest.json and results/latest.md (quick mode writes only
 * where --out says).
 *
 *   --only latency,chain,recovery,stage,dashboard   a subset
 *   --quick                               small sizes (the CI smoke test)
 *   --processes 1,2,4                     listener / Graphile processes per chain run
 *   --out DIR                             where to write the results
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chainBenchmark } from './chain.js';
import { DURABILITY, startBenchServer } from './db.js';
import { latencyBenchmark } from './latency.js';
import { machineInfo } from './machine.js';
import { reconnectBenchmark, sweepBenchmark } from './recovery.js';
import { type BenchResults, renderMarkdown } from './report.js';
import { round } from './stats.js';

export const BENCHMARKS = ['latency', 'chain', 'recovery', 'stage', 'dashboard'] as const;
export type BenchmarkName = (typeof BENCHMARKS)[number];

export interface BenchOptions {
  only: BenchmarkName[];
  quick: boolean;
  processes: number[];
  out: string | null;
  log: (line: string) => void;
}

export function sizes(quick: boolean) {
  return quick
    ? {
        latency: { samples: 20, warmup: 5 },
        chain: { jobs: 10, variants: 4 },
        reconnect: { variants: 60 },
        sweep: { variants: 20_000, repeats: 2 },
        stage: { photos: 1 },
        dashboard: { jobs: 20_000, samples: 5 },
      }
    : {
        latency: { samples: 1000, warmup: 50 },
        chain: { jobs: 500, variants: 4 },
        reconnect: { variants: 1000 },
        sweep: { variants: 1_000_000, repeats: 5 },
        stage: { photos: Number.POSITIVE_INFINITY },
        dashboard: { jobs: 1_000_000, samples: 20 },
      };
}

const round2 = (v: number[]) => v.map((x) => Math.round(x * 100) / 100);

export async function runBenchmarks(o: BenchOptions): Promise<BenchResults> {
  const size = sizes(o.quick);
  const started = performance.now();
  const before = round2(loadavg());
  const bench = await startBenchServer();
  const results: BenchResults = {
    quick: o.quick,
    durability: DURABILITY,
    machine: machineInfo(await bench.version()),
    load: { before, after: [] },
    durationSeconds: 0,
    errors: [],
  };
  const attempt = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      o.log(`${name} failed: ${(err as Error).stack ?? String(err)}`);
      results.errors.push({ benchmark: name, error: (err as Error).message });
      return undefined;
    }
  };
  try {
    if (o.only.includes('latency')) {
      o.log(`latency: ${size.latency.samples} serial samples`);
      results.latency = await attempt('latency', () => latencyBenchmark(bench, { ...size.latency, log: o.log }));
    }
    if (o.only.includes('chain')) {
      results.chain = await attempt('chain', () =>
        chainBenchmark(bench, {
          ...size.chain,
          processes: o.processes,
          graphileConcurrency: 10,
          timeoutMs: o.quick ? 120_000 : 300_000,
          log: o.log,
        }),
      );
    }
    if (o.only.includes('recovery')) {
      o.log(`recovery: reconnect with ${size.reconnect.variants} missed transitions`);
      const reconnect = await attempt('recovery/reconnect', () =>
        reconnectBenchmark(bench, { ...size.reconnect, variantsPerJob: 4, reconnectDelaySeconds: 1, log: o.log }),
      );
      o.log(`recovery: sweep over ${size.sweep.variants} finished variants`);
      const sweep = await attempt('recovery/sweep', () =>
        sweepBenchmark(bench, { ...size.sweep, variantsPerJob: 4, log: o.log }),
      );
      results.recovery = {};
      if (reconnect) results.recovery.reconnect = reconnect;
      if (sweep) results.recovery.sweep = sweep;
    }
    if (o.only.includes('stage')) {
      o.log('stage: CPU time of each stage on each sample photo');
      const { stageBenchmark } = await import('./stage.js');
      results.stage = await attempt('stage', () => stageBenchmark(bench, { maxPhotos: size.stage.photos, log: o.log }));
    }
    if (o.only.includes('dashboard')) {
      o.log(`dashboard: the jobs page at ${size.dashboard.jobs} jobs, first and next page of each filter`);
      const { dashboardBenchmark } = await import('./dashboard.js');
      results.dashboard = await attempt('dashboard', () =>
        dashboardBenchmark(bench, { ...size.dashboard, log: o.log }),
      );
    }
  } finally {
    await bench.stop();
  }
  results.load.after = round2(loadavg());
  results.durationSeconds = round((performance.now() - started) / 1000, 1);
  if (o.out) await writeResults(results, o.out);
  return results;
}

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      processes: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'usage: bench [--only latency,chain,recovery,stage,dashboard] [--quick] [--processes 1,2,4] [--out DIR]\n',
    );
    process.exit(0);
  }
  const only = (values.only ?? BENCHMARKS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const name of only) {
    if (!(BENCHMARKS as readonly string[]).includes(name)) {
      throw new Error(`--only: unknown benchmark '${name}' (known: ${BENCHMARKS.join(', ')})`);
    }
  }
  const quick = values.quick ?? false;
  const processes = (values.processes ?? (quick ? '2' : '1,2,4')).split(',').map((s) => Number(s.trim()));
  if (processes.some((n) => !Number.isInteger(n) || n < 1 || n > 16)) {
    throw new Error('--processes: integers between 1 and 16');
  }
  const defaultOut = fileURLToPath(new URL('../results/', import.meta.url));
  return {
    only: only as BenchmarkName[],
    quick,
    processes,
    out: values.out ?? (quick ? null : defaultOut),
    log: (line) => process.stderr.write(`[bench] ${line}\n`),
  };
}

/**
 * JSON as the repository's formatter (Biome, line width 120) writes it, so that a
 * committed results file passes `pnpm lint`: objects expanded, arrays of plain
 * values on one line when they fit.
 */
export function formatJson(value: unknown, indent = '', prefixLength = 0): string {
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    if (value.every((v) => v === null || typeof v !== 'object')) {
      const inline = `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
      if (indent.length + prefixLength + inline.length + 1 <= 120) return inline;
    }
    const inner = `${indent}  `;
    return `[\n${value.map((v) => inner + formatJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    if (entries.length === 0) return '{}';
    const inner = `${indent}  `;
    const lines = entries.map(([k, v]) => {
      const key = `${JSON.stringify(k)}: `;
      return `${inner}${key}${formatJson(v, inner, key.length)}`;
    });
    return `{\n${lines.join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export async function writeResults(results: BenchResults, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'latest.json'), `${formatJson(results)}\n`);
  await writeFile(join(dir, 'latest.md'), renderMarkdown(results));
}

async function main(): Promise<void> {
  let o: BenchOptions;
  try {
    // `pnpm bench -- --quick` hands the separator through: ignore it.
    o = parseOptions(process.argv.slice(2).filter((a) => a !== '--'));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const results = await runBenchmarks(o);
  const md = renderMarkdown(results);
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n\n${md}\n`);
  if (o.out) process.stderr.write(`[bench] wrote ${join(o.out, 'latest.json')} and latest.md\n`);
  process.exit(results.errors.length ? 1 : 0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}

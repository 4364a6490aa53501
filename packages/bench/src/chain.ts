/**
 * Chain throughput: N jobs x V variants through the whole 10-step chain
 * (fan-in included) against the stage double, with 1, 2 and 4 processes, for
 * our engine (listener plugin instances), a naive dispatcher (naive-runner.ts:
 * one guarded claim per notification, one POST, a 5 s sweep) and Graphile
 * Worker 0.17.3 (the same chain as tasks), each on a fresh database of the
 * same server, in the same run. Besides steps/s, every run measures the hop
 * latency under load: from just before the stage's (S,'done') UPDATE to the
 * next step's request arriving at the double.
 */
import { performance } from 'node:perf_hooks';
import { JOB_STEPS, VARIANT_STEPS } from '@feedlyai/pipeline-core';
import { runMigrations } from 'graphile-worker';
import pg from 'pg';
import { type Forked, forkChild, siblingModule } from './child.js';
import { type BenchServer, dropDatabase } from './db.js';
import { startFeedlyInstances } from './feedly.js';
import { ENQUEUE_FIRST_STEPS_SQL } from './graphile-tasks.js';
import type { GraphileRunnerConfig } from './graphile-runner.js';
import { machineCpu } from './machine.js';
import type { NaiveRunnerConfig } from './naive-runner.js';
import { type DbProfile, enableStatements, readProfile, resetProfile } from './profile.js';
import { bulkSeed, jobsDone } from './seed.js';
import { type Percentiles, percentiles, round } from './stats.js';
import { startStageDouble } from './stage-double.js';

export type SystemName = 'feedly' | 'naive' | 'graphile';

export const SYSTEMS: readonly SystemName[] = ['feedly', 'naive', 'graphile'];

export interface ChainOptions {
  jobs: number;
  variants: number;
  processes: readonly number[];
  /** Graphile Worker concurrency per process. */
  graphileConcurrency: number;
  /** Per-run deadline. */
  timeoutMs: number;
  log?: (line: string) => void;
}

export interface ChainRun {
  system: SystemName;
  processes: number;
  jobs: number;
  variants: number;
  steps: number;
  /** From the statement that makes the first steps ready to the last job done. */
  seconds: number;
  stepsPerSecond: number;
  /** Stage's (S,'done') UPDATE sent -> the next step's request at the double, ms, under load. */
  hopLatency: Percentiles;
  /** Requests the double accepted more than once for one (subject, step). */
  duplicates: number;
  /** (subject, step) pairs that never reached the double. */
  missing: number;
  machineCpuBusy: number | null;
  /** CPU seconds used by the worker processes (user + system). */
  workerCpuSeconds: number;
  /** CPU seconds used by the bench process (the stage double). */
  doubleCpuSeconds: number;
  profile: DbProfile & { statementsPerStep: number; commitsPerStep: number };
  /**
   * Ours only, summed over the instances: notifications left to their owner,
   * deferred claims made after the delay, and claims or events that led nowhere.
   */
  engine?: { deferred: number; deferredClaims: number; skips: number; dispatches: number };
}

export interface ChainResult {
  runs: ChainRun[];
  comparison: {
    processes: number;
    feedlyStepsPerSecond: number;
    naiveStepsPerSecond: number;
    graphileStepsPerSecond: number;
    /** Ours / Graphile Worker's steps per second. */
    ratio: number;
    /** Ours / the naive dispatcher's steps per second. */
    naiveRatio: number;
    feedlyHopP50Ms: number;
    naiveHopP50Ms: number;
    feedlySeconds: number;
    naiveSeconds: number;
    graphileSeconds: number;
  }[];
}

async function startNaive(n: number, url: string, stageUrl: string): Promise<Forked[]> {
  const cfg: NaiveRunnerConfig = { connectionString: url, stageUrl };
  return await Promise.all(
    Array.from({ length: n }, () => forkChild(siblingModule(import.meta.url, 'naive-runner'), cfg)),
  );
}

async function startGraphile(n: number, url: string, stageUrl: string, concurrency: number): Promise<Forked[]> {
  const cfg: GraphileRunnerConfig = { connectionString: url, stageUrl, concurrency, maxPoolSize: concurrency + 2 };
  return await Promise.all(
    Array.from({ length: n }, () => forkChild(siblingModule(import.meta.url, 'graphile-runner'), cfg)),
  );
}

export async function chainRun(
  bench: BenchServer,
  system: SystemName,
  processes: number,
  o: ChainOptions,
): Promise<ChainRun> {
  const url = await bench.freshDatabase(`chain_${system}_${processes}`);
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  pool.on('error', () => {});
  const lastDone = new Map<string, number>();
  const hops: number[] = [];
  const double = await startStageDouble({
    connectionString: url,
    poolMax: 24,
    onFinishDone: (f) => {
      lastDone.set(f.subject, f.at);
      if (f.step === 'iou_eval') lastDone.set(`fan:${f.jobId}`, f.at);
    },
    onArrival: (a) => {
      const subject = a.body.job_variants_id ?? a.body.job_id;
      const prev = a.step === 'ad_copy_gen_kor' ? lastDone.get(`fan:${a.body.job_id}`) : lastDone.get(subject);
      if (prev !== undefined) hops.push(a.at - prev);
    },
  });
  let workers: Forked[] = [];
  try {
    await enableStatements(pool);
    if (system === 'graphile') {
      await runMigrations({ connectionString: url, logger: undefined });
      await bulkSeed(pool, { jobs: o.jobs, variantsPerJob: o.variants, variantStep: 'img_gen', variantStatus: 'done' });
      workers = await startGraphile(processes, url, double.url, o.graphileConcurrency);
    } else {
      await bulkSeed(pool, {
        jobs: o.jobs,
        variantsPerJob: o.variants,
        variantStep: 'img_gen',
        variantStatus: 'queued',
      });
      workers =
        system === 'naive'
          ? await startNaive(processes, url, double.url)
          : await startFeedlyInstances(processes, { connectionString: url, stageUrl: double.url });
    }
    await pool.query('ANALYZE');
    const base = await resetProfile(pool);
    const cpu = machineCpu();
    const cpu0 = process.cpuUsage();
    const t0 = Date.now();
    const p0 = performance.now();
    if (system === 'graphile') await pool.query(ENQUEUE_FIRST_STEPS_SQL);
    else
      await pool.query(`UPDATE jobs_variants SET status = 'done' WHERE current_step = 'img_gen' AND status = 'queued'`);
    const deadline = Date.now() + o.timeoutMs;
    let lastLog = 0;
    for (;;) {
      const done = await jobsDone(pool);
      if (done >= o.jobs) break;
      if (Date.now() > deadline) {
        throw new Error(`${system} x${processes}: only ${done}/${o.jobs} jobs done after ${o.timeoutMs} ms`);
      }
      if (performance.now() - lastLog > 5_000) {
        lastLog = performance.now();
        o.log?.(`  ${system} x${processes}: ${done}/${o.jobs} jobs done (${Math.round((lastLog - p0) / 1000)} s)`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const last = await pool.query<{ t: number }>(
      `/* bench_probe */ SELECT extract(epoch FROM max(completed_at)) * 1000 AS t FROM jobs`,
    );
    const seconds = (Number(last.rows[0]?.t) - t0) / 1000;
    const busy = cpu();
    const dcpu = process.cpuUsage(cpu0);
    let workerCpu = 0;
    const stats = await Promise.all(workers.map((w) => w.stop()));
    workers = [];
    const engine = { deferred: 0, deferredClaims: 0, skips: 0, dispatches: 0 };
    for (const s of stats) {
      const c = s?.cpu as { user: number; system: number } | undefined;
      if (c) workerCpu += (c.user + c.system) / 1e6;
      for (const k of Object.keys(engine) as (keyof typeof engine)[]) engine[k] += Number(s?.[k] ?? 0);
    }
    const profile = await readProfile(pool, base);
    const steps = o.jobs * (o.variants * VARIANT_STEPS.length + JOB_STEPS.length);
    let duplicates = 0;
    const accepted = double.acceptedCounts();
    for (const n of accepted.values()) if (n > 1) duplicates += n - 1;
    const missing = Math.max(0, steps - [...accepted.values()].filter((n) => n >= 1).length);
    return {
      system,
      processes,
      jobs: o.jobs,
      variants: o.variants,
      steps,
      seconds: round(seconds, 3),
      stepsPerSecond: round(steps / seconds, 1),
      hopLatency: percentiles(hops),
      duplicates,
      missing,
      machineCpuBusy: busy,
      workerCpuSeconds: round(workerCpu, 2),
      doubleCpuSeconds: round((dcpu.user + dcpu.system) / 1e6, 2),
      ...(system === 'feedly' ? { engine } : {}),
      profile: {
        ...profile,
        statementsPerStep: round(profile.statements / steps, 2),
        commitsPerStep: round(profile.commits / steps, 2),
      },
    };
  } finally {
    await Promise.all(workers.map((w) => w.kill()));
    await double.close();
    await pool.end().catch(() => {});
    await dropDatabase(bench.server, url).catch(() => {});
  }
}

export async function chainBenchmark(bench: BenchServer, o: ChainOptions): Promise<ChainResult> {
  const runs: ChainRun[] = [];
  const comparison: ChainResult['comparison'] = [];
  for (const n of o.processes) {
    const pair: Partial<Record<SystemName, ChainRun>> = {};
    for (const system of SYSTEMS) {
      o.log?.(`chain: ${system} with ${n} process(es), ${o.jobs} jobs x ${o.variants} variants`);
      const run = await chainRun(bench, system, n, o);
      o.log?.(`  -> ${run.stepsPerSecond} steps/s, last job done after ${run.seconds} s`);
      runs.push(run);
      pair[system] = run;
    }
    const f = pair.feedly as ChainRun;
    const nv = pair.naive as ChainRun;
    const g = pair.graphile as ChainRun;
    comparison.push({
      processes: n,
      feedlyStepsPerSecond: f.stepsPerSecond,
      naiveStepsPerSecond: nv.stepsPerSecond,
      graphileStepsPerSecond: g.stepsPerSecond,
      ratio: round(f.stepsPerSecond / g.stepsPerSecond, 2),
      naiveRatio: round(f.stepsPerSecond / nv.stepsPerSecond, 2),
      feedlyHopP50Ms: f.hopLatency.p50,
      naiveHopP50Ms: nv.hopLatency.p50,
      feedlySeconds: f.seconds,
      naiveSeconds: nv.seconds,
      graphileSeconds: g.seconds,
    });
  }
  return { runs, comparison };
}

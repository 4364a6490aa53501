/**
 * Recovery benchmarks:
 * - sweep: one recovery sweep of the engine over 1,000,000 finished variants
 *   (and their jobs), seeded with one INSERT ... SELECT generate_series; the
 *   plans of every statement the sweep ran (auto_explain, ANALYZE) are
 *   summarised and checked for sequential scans on jobs / jobs_variants;
 * - reconnect: the listener's connection is killed, N variants are made done
 *   while it is away, and the time from its reconnect to every missed
 *   transition dispatched (every vlm_analyze request at the double) is measured.
 */
import { performance } from 'node:perf_hooks';
import { createPipelineEngine, LISTENER_APPLICATION_NAME } from '@feedlyai/pipeline-core';
import pg from 'pg';
import type { Forked } from './child.js';
import { type BenchServer, dropDatabase } from './db.js';
import { startFeedlyInstances } from './feedly.js';
import { type LoggedPlan, plansFromLog } from './plans.js';
import { bulkSeed } from './seed.js';
import { round } from './stats.js';
import { startStageDouble } from './stage-double.js';

export interface SweepResult {
  variants: number;
  jobs: number;
  seedSeconds: number;
  /** First sweep after seeding + ANALYZE, and the best of the following ones, ms. */
  firstSweepMs: number;
  sweepMs: number;
  scanned: number;
  plans: LoggedPlan[];
  /** True when no plan has a Seq Scan on jobs or jobs_variants. */
  noSeqScan: boolean;
}

export async function sweepBenchmark(
  bench: BenchServer,
  o: { variants: number; variantsPerJob: number; repeats: number; log?: (l: string) => void },
): Promise<SweepResult> {
  const url = await bench.freshDatabase('sweep');
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  admin.on('error', () => {});
  const jobs = Math.ceil(o.variants / o.variantsPerJob);
  let pool: pg.Pool | null = null;
  try {
    const t0 = performance.now();
    const n = await bulkSeed(admin, {
      jobs,
      variantsPerJob: o.variantsPerJob,
      variantStep: 'iou_eval',
      variantStatus: 'done',
      jobStep: 'instagram_feed_gen',
      jobStatus: 'done',
    });
    const seedSeconds = (performance.now() - t0) / 1000;
    await admin.query('VACUUM ANALYZE jobs');
    await admin.query('VACUUM ANALYZE jobs_variants');
    o.log?.(`  sweep: seeded ${n} finished variants and ${jobs} jobs in ${round(seedSeconds, 1)} s`);
    const dbName = pg.escapeIdentifier(new URL(url).pathname.slice(1));
    await admin.query(`ALTER DATABASE ${dbName} SET auto_explain.log_min_duration = 0`);
    await admin.query(`ALTER DATABASE ${dbName} SET auto_explain.log_analyze = on`);
    await admin.query(`ALTER DATABASE ${dbName} SET auto_explain.log_format = 'json'`);
    await admin.query(`ALTER DATABASE ${dbName} SET auto_explain.log_nested_statements = on`);
    pool = new pg.Pool({ connectionString: url, max: 4 });
    pool.on('error', () => {});
    // A connection per parallel query of the sweep, opened before timing.
    await Promise.all(Array.from({ length: 4 }, () => (pool as pg.Pool).query('SELECT 1')));
    const engine = createPipelineEngine({ pool, stageApiUrl: 'http://127.0.0.1:9', instanceId: 'bench-sweep' });
    bench.captureLog();
    const a = performance.now();
    const first = await engine.recover();
    const firstSweepMs = performance.now() - a;
    const log = bench.takeLog();
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < o.repeats; i++) {
      const b = performance.now();
      await engine.recover();
      best = Math.min(best, performance.now() - b);
    }
    await engine.close();
    const plans = plansFromLog(log).filter((p) => !/^SELECT 1$/i.test(p.query));
    return {
      variants: n,
      jobs,
      seedSeconds: round(seedSeconds, 2),
      firstSweepMs: round(firstSweepMs, 2),
      sweepMs: round(best, 2),
      scanned: first.scanned,
      plans,
      noSeqScan: plans.length > 0 && plans.every((p) => !p.seqScans.some((r) => r === 'jobs' || r === 'jobs_variants')),
    };
  } finally {
    await pool?.end().catch(() => {});
    await admin.end().catch(() => {});
    await dropDatabase(bench.server, url).catch(() => {});
  }
}

export interface ReconnectResult {
  variants: number;
  /** Listener connection killed -> its new LISTEN connection (backend_start), ms. */
  reconnectAfterMs: number;
  /** New connection -> first missed transition's request at the stage, ms. */
  firstDispatchMs: number;
  /** New connection -> the last of the missed transitions' requests at the stage, ms. */
  allDispatchedMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function reconnectBenchmark(
  bench: BenchServer,
  o: {
    variants: number;
    variantsPerJob: number;
    reconnectDelaySeconds: number;
    log?: (l: string) => void;
    listenerLogLevel?: string;
  },
): Promise<ReconnectResult> {
  const url = await bench.freshDatabase('reconnect');
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => {});
  const jobs = Math.ceil(o.variants / o.variantsPerJob);
  const arrivals: number[] = [];
  const double = await startStageDouble({
    connectionString: url,
    poolMax: 16,
    onArrival: (a) => {
      if (a.step === 'vlm_analyze') arrivals.push(Date.now());
    },
  });
  let workers: Forked[] = [];
  try {
    await bulkSeed(pool, { jobs, variantsPerJob: o.variantsPerJob, variantStep: 'img_gen', variantStatus: 'queued' });
    await pool.query('ANALYZE');
    workers = await startFeedlyInstances(1, {
      connectionString: url,
      stageUrl: double.url,
      idPrefix: 'reconnect',
      reconnectDelay: o.reconnectDelaySeconds,
      // No periodic sweep during the measurement: only the reconnect's own recovery.
      recoveryInterval: 3600,
      ...(o.listenerLogLevel ? { logLevel: o.listenerLogLevel } : {}),
    });
    const listenerPids = async () =>
      (
        await pool.query<{ pid: number; start: Date }>(
          `/* bench_probe */ SELECT pid, backend_start AS start FROM pg_stat_activity
            WHERE application_name = $1 AND datname = current_database()`,
          [LISTENER_APPLICATION_NAME],
        )
      ).rows;
    let before = await listenerPids();
    for (let i = 0; before.length === 0 && i < 200; i++) {
      await sleep(50);
      before = await listenerPids();
    }
    if (before.length === 0) throw new Error('no job_state_listener connection found');
    const killedAt = Date.now();
    const old = new Set(before.map((r) => r.pid));
    await pool.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid', [[...old]]);
    // pg_terminate_backend only signals: wait until the killed backends are gone, or one of them
    // could still deliver the notifications of the update below.
    const gone = async () => (await listenerPids()).every((r) => !old.has(r.pid));
    for (let i = 0; !(await gone()); i++) {
      if (i > 500) throw new Error('the listener connection did not go away');
      await sleep(5);
    }
    // While it is away: every variant made done in one UPDATE (its notifications are lost). The
    // update commits only if no listener connection is back yet (then nobody receives them).
    let updated = 0;
    const client = await pool.connect();
    try {
      for (;;) {
        await client.query('BEGIN');
        const upd = await client.query(`UPDATE jobs_variants SET status = 'done' WHERE current_step = 'img_gen'`);
        const back = await client.query(
          'SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
          [LISTENER_APPLICATION_NAME],
        );
        if (back.rowCount === 0) {
          await client.query('COMMIT');
          updated = upd.rowCount ?? 0;
          break;
        }
        await client.query('ROLLBACK');
        await pool.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name = $1 AND datname = current_database()`,
          [LISTENER_APPLICATION_NAME],
        );
        while ((await listenerPids()).length > 0) await sleep(5);
      }
    } finally {
      client.release();
    }
    const madeDoneAt = Date.now();
    if (madeDoneAt - killedAt > o.reconnectDelaySeconds * 1000) {
      o.log?.('  reconnect: warning, the update took longer than the reconnect delay');
    }
    let back: { pid: number; start: Date } | undefined;
    const deadline = Date.now() + 60_000 + o.reconnectDelaySeconds * 1000;
    while (!back) {
      if (Date.now() > deadline) throw new Error('the listener did not reconnect');
      back = (await listenerPids()).sort((a, b) => a.start.getTime() - b.start.getTime())[0];
      if (!back) await sleep(20);
    }
    const reconnectedAt = back.start.getTime();
    while (arrivals.length < updated) {
      if (Date.now() > deadline + 60_000) {
        throw new Error(`only ${arrivals.length}/${updated} missed transitions dispatched`);
      }
      await sleep(20);
    }
    const sorted = [...arrivals].sort((a, b) => a - b);
    return {
      variants: updated,
      reconnectAfterMs: reconnectedAt - killedAt,
      firstDispatchMs: (sorted[0] as number) - reconnectedAt,
      allDispatchedMs: (sorted[updated - 1] as number) - reconnectedAt,
    };
  } finally {
    await Promise.all(workers.map((w) => w.kill()));
    await double.close();
    await pool.end().catch(() => {});
    await dropDatabase(bench.server, url).catch(() => {});
  }
}

/**
 * A burst of jobs through the real stage server with its hosted listener (not
 * a test; test/burst.test.ts runs a small one): N jobs of V variants seeded at
 * once on the bundled coffee photo, every variant marked (img_gen, done) in
 * one go, then each step's admission wait and work as the stage server
 * recorded them (stage_run_timings), the 429s of admission by reason, and
 * each job's time from the burst to (instagram_feed_gen, done). Prints one
 * JSON object (docs/stage-api.md, "Admission", has the figures).
 *
 * From apps/stage-api (it runs the TypeScript sources, no build needed):
 *
 *   node test/measure/run-ts.mjs test/measure/burst.ts [jobs=20] [variants=3] [log-file]
 *
 * STAGE_CPU_WORKERS (default 1) and the other STAGE_* variables of the stage
 * server apply; a log file keeps the server's and the listener's log. Its own database on the test run's PostgreSQL (embedded,
 * started and stopped by @feedlyai/test-helpers, or TEST_DATABASE_URL).
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AUTOMATIC_STEPS } from '@feedlyai/pipeline-core';
import { createTestDatabase, freePort, markImgGenDone, seedJob, waitFor } from '@feedlyai/test-helpers';
import type pg from 'pg';
import { type BuildAppOptions, buildApp } from '../../src/app.js';
import { migrateAll } from '../helpers.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

export interface Quantiles {
  p50: number;
  p95: number;
  max: number;
}

export interface BurstReport {
  jobs: number;
  variants: number;
  cpuWorkers: number;
  /** 1-minute load average before and after the burst (this machine is shared). */
  loadavg: { before: number; after: number };
  warmupMs: number | null;
  /** From the burst (variants marked img_gen/done) until the last job was done. */
  wallMs: number;
  completed: number;
  failed: number;
  /** Each job: from the burst to (instagram_feed_gen, done). */
  jobMs: Quantiles;
  /** Per step: runs, admission wait and work (ms), and whether p95 wait <= p95 work. */
  steps: Record<string, { runs: number; wait: Quantiles; work: Quantiles; waitP95LeWorkP95: boolean }>;
  /** 429s of admission by reason; `whileRoom`: those not for a full queue (deadline, max_wait). */
  refusals: { queue_full: number; deadline: number; max_wait: number; whileRoom: number };
  /** Largest admission queue length seen per resource (sampled every 50 ms). */
  maxQueued: Record<string, number>;
  /** 429s the dispatcher waited out. */
  busyWaits: number;
}

export function quantiles(values: readonly number[]): Quantiles {
  if (values.length === 0) return { p50: 0, p95: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  // Nearest rank.
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
  return { p50: at(0.5), p95: at(0.95), max: s[s.length - 1] as number };
}

/** Sum of a counter's samples in Prometheus text, by one label. */
function sumBy(metrics: string, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}\\{([^}]*)\\} ([0-9.e+-]+)$`, 'gm');
  for (const m of metrics.matchAll(re)) {
    const v = new RegExp(`${label}="([^"]*)"`).exec(m[1] as string)?.[1] ?? '';
    out[v] = (out[v] ?? 0) + Number(m[2]);
  }
  return out;
}

export interface BurstOptions {
  /** The database (its own, migrated). */
  url: string;
  pool: pg.Pool;
  /** A storage root holding inputs/coffee.png. */
  storageDir: string;
  jobs: number;
  variants: number;
  timeoutMs: number;
  app?: BuildAppOptions;
}

/** Seeds the burst, waits for every job, and reports. The app is built and closed here. */
export async function runBurst(o: BurstOptions): Promise<BurstReport> {
  const port = await freePort();
  const cpuWorkers = o.app?.cpuWorkers ?? Number(process.env.STAGE_CPU_WORKERS ?? 1);
  const app = await buildApp({
    env: { ...process.env, ENABLE_JOB_STATE_LISTENER: 'true' },
    pool: o.pool,
    storageDir: o.storageDir,
    port,
    logger: false,
    cpuWorkers,
    warm: true,
    listener: { connectionString: o.url },
    ...o.app,
  });
  const maxQueued: Record<string, number> = {};
  let sampler: NodeJS.Timeout | undefined;
  try {
    await app.listen({ host: '127.0.0.1', port });
    await waitFor(() => app.jobStateListener.status().connected, { message: 'listener connected' });
    const seeded = [];
    for (let i = 0; i < o.jobs; i++) {
      seeded.push(
        await seedJob(o.pool, {
          imageUrl: 'inputs/coffee.png',
          variants: o.variants,
          adCopyEng: 'Slow mornings, perfect pour',
          taglineKor: '오늘의 한 잔, 천천히',
        }),
      );
    }
    const ids = seeded.map((j) => j.jobId);
    sampler = setInterval(() => {
      for (const [r, s] of Object.entries(app.stageContext.limiter.snapshot())) {
        maxQueued[r] = Math.max(maxQueued[r] ?? 0, s.queued);
      }
    }, 50);
    const before = loadavg()[0] as number;
    const t0 = Date.now();
    await markImgGenDone(
      o.pool,
      seeded.flatMap((j) => j.variantIds),
    );
    const end = await waitFor(
      async () => {
        const r = await o.pool.query<{ done: number; failed: number }>(
          `SELECT count(*) FILTER (WHERE current_step = 'instagram_feed_gen' AND status = 'done')::int AS done,
                  count(*) FILTER (WHERE failure_reason IS NOT NULL)::int AS failed
             FROM jobs WHERE job_id = ANY($1::uuid[])`,
          [ids],
        );
        const row = r.rows[0] as { done: number; failed: number };
        return row.done + row.failed === ids.length ? row : null;
      },
      { timeoutMs: o.timeoutMs, intervalMs: 100, message: `${o.jobs} jobs done or failed` },
    );
    const wallMs = Date.now() - t0;
    clearInterval(sampler);
    const jobTimes = await o.pool.query<{ ms: number }>(
      `SELECT (extract(epoch FROM completed_at) * 1000 - $2::float8)::int AS ms
         FROM jobs WHERE job_id = ANY($1::uuid[]) AND completed_at IS NOT NULL`,
      [ids, t0],
    );
    const timings = await o.pool.query<{ step: string; wait_ms: number; work_ms: number }>(
      `SELECT step, wait_ms, work_ms FROM stage_run_timings WHERE job_id = ANY($1::uuid[]) AND outcome = 'done'`,
      [ids],
    );
    const steps: BurstReport['steps'] = {};
    for (const step of AUTOMATIC_STEPS) {
      const rows = timings.rows.filter((r) => r.step === step);
      if (rows.length === 0) continue;
      const wait = quantiles(rows.map((r) => r.wait_ms));
      const work = quantiles(rows.map((r) => r.work_ms));
      steps[step] = { runs: rows.length, wait, work, waitP95LeWorkP95: wait.p95 <= work.p95 };
    }
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    const refused = sumBy(metrics, 'stage_admission_refused_total', 'reason');
    const busy = /^pipeline_busy_waits_total ([0-9.e+-]+)$/m.exec(metrics)?.[1];
    const refusals = {
      queue_full: refused.queue_full ?? 0,
      deadline: refused.deadline ?? 0,
      max_wait: refused.max_wait ?? 0,
      whileRoom: (refused.deadline ?? 0) + (refused.max_wait ?? 0),
    };
    return {
      jobs: o.jobs,
      variants: o.variants,
      cpuWorkers,
      loadavg: { before: Math.round(before * 100) / 100, after: Math.round((loadavg()[0] as number) * 100) / 100 },
      warmupMs: app.stageContext.warmup.status().ms,
      wallMs,
      completed: end.done,
      failed: end.failed,
      jobMs: quantiles(jobTimes.rows.map((r) => r.ms)),
      steps,
      refusals,
      maxQueued,
      busyWaits: busy ? Number(busy) : 0,
    };
  } finally {
    clearInterval(sampler);
    await app.close();
  }
}

/** A temporary storage root with the coffee photo under inputs/. */
export async function burstStorage(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'stage-burst-'));
  await mkdir(path.join(dir, 'inputs'), { recursive: true });
  await copyFile(path.join(FIXTURES, 'coffee.png'), path.join(dir, 'inputs', 'coffee.png'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

async function main(): Promise<void> {
  const jobs = Number(process.argv[2] ?? 20);
  const variants = Number(process.argv[3] ?? 3);
  const logFile = process.argv[4];
  if (!Number.isInteger(jobs) || jobs < 1 || !Number.isInteger(variants) || variants < 1) {
    process.stderr.write(
      'usage: node test/measure/run-ts.mjs test/measure/burst.ts [jobs=20] [variants=3] [log-file]\n',
    );
    process.exit(2);
  }
  const db = await createTestDatabase({ migrate: migrateAll });
  const storage = await burstStorage();
  try {
    const report = await runBurst({
      url: db.url,
      pool: db.pool,
      storageDir: storage.dir,
      jobs,
      variants,
      timeoutMs: 30 * 60_000,
      // A log file: the stage server's and the listener's log (default: none).
      ...(logFile ? { app: { logger: { level: 'info', file: logFile } } } : {}),
    });
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    await db.close();
    await storage.remove();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}

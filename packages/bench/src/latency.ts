/**
 * Trigger latency: serial samples, from just before the UPDATE that commits
 * (img_gen,'done') is sent to the stage request (vlm_analyze) arriving at the
 * double, with one listener instance in its own process. Each sample's job
 * then runs its whole chain before the next sample, so samples never overlap;
 * the hops inside those chains (from just before the stage's own
 * (S,'done') UPDATE to the next step's request) are reported beside it.
 * The floor: a raw NOTIFY round trip on the same database.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { type Forked, forkChild, siblingModule } from './child.js';
import { type BenchServer, dropDatabase } from './db.js';
import { startFeedlyInstances } from './feedly.js';
import { notifyFloor } from './notify-floor.js';
import { bulkSeed } from './seed.js';
import { type Percentiles, percentiles } from './stats.js';
import { startStageDouble } from './stage-double.js';

export interface LatencyResult {
  samples: number;
  /** The naive dispatcher (naive-runner.ts) measured the same way, right after ours. */
  naive?: { trigger: Percentiles; hops: Percentiles };
  /** UPDATE (img_gen,'done') sent -> vlm_analyze request at the stage, ms. */
  trigger: Percentiles;
  /** Inside the chains: stage's (S,'done') UPDATE sent -> next step's request, ms (fan-in hop included). */
  hops: Percentiles;
  /** The fan-in hop alone (iou_eval done on the last variant -> ad_copy_gen_kor request), ms. */
  fanInHop: Percentiles;
  /** Raw NOTIFY round trip, ms. */
  floor: Percentiles;
}

export async function latencyBenchmark(
  bench: BenchServer,
  o: { samples: number; warmup: number; log?: (l: string) => void },
): Promise<LatencyResult> {
  const ours = await latencyRun(bench, 'feedly', o);
  o.log?.('  latency: the naive dispatcher');
  const naive = await latencyRun(bench, 'naive', o);
  const url = await bench.freshDatabase('latency_floor');
  try {
    const floor = await notifyFloor(url, o.samples);
    return { ...ours, naive: { trigger: naive.trigger, hops: naive.hops }, floor };
  } finally {
    await dropDatabase(bench.server, url).catch(() => {});
  }
}

async function latencyRun(
  bench: BenchServer,
  system: 'feedly' | 'naive',
  o: { samples: number; warmup: number; log?: (l: string) => void },
): Promise<Omit<LatencyResult, 'floor' | 'naive'>> {
  const url = await bench.freshDatabase(`latency_${system}`);
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => {});
  const total = o.samples + o.warmup;
  const waiters = new Map<string, (at: number) => void>();
  const finishers = new Map<string, () => void>();
  const lastDone = new Map<string, { step: string; at: number }>();
  const hops: number[] = [];
  const fanIn: number[] = [];
  let measuring = false;
  const double = await startStageDouble({
    connectionString: url,
    poolMax: 4,
    onArrival: (a) => {
      const prev = lastDone.get(a.body.job_id);
      if (prev && measuring) {
        hops.push(a.at - prev.at);
        if (a.step === 'ad_copy_gen_kor') fanIn.push(a.at - prev.at);
      }
      if (a.step === 'vlm_analyze' && a.body.job_variants_id) waiters.get(a.body.job_variants_id)?.(a.at);
    },
    onFinishDone: (f) => {
      lastDone.set(f.jobId, { step: f.step, at: f.at });
    },
    onAnswer: (a) => {
      if (a.step === 'instagram_feed_gen' && a.code === 200) finishers.get(a.jobId)?.();
    },
  });
  let workers: Forked[] = [];
  try {
    await bulkSeed(pool, { jobs: total, variantsPerJob: 1, variantStep: 'img_gen', variantStatus: 'queued' });
    await pool.query('ANALYZE');
    const { rows } = await pool.query<{ job_variants_id: string; job_id: string }>(
      'SELECT job_variants_id::text, job_id::text FROM jobs_variants ORDER BY job_variants_id',
    );
    workers =
      system === 'naive'
        ? [
            await forkChild(siblingModule(import.meta.url, 'naive-runner'), {
              connectionString: url,
              stageUrl: double.url,
            }),
          ]
        : await startFeedlyInstances(1, { connectionString: url, stageUrl: double.url, idPrefix: 'latency' });
    const trigger: number[] = [];
    for (let i = 0; i < rows.length; i++) {
      const { job_variants_id: id, job_id: jobId } = rows[i] as { job_variants_id: string; job_id: string };
      measuring = i >= o.warmup;
      const arrived = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`sample ${i}: no stage request within 10 s`)), 10_000);
        waiters.set(id, (at) => {
          clearTimeout(timer);
          resolve(at);
        });
      });
      const finished = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`sample ${i}: job not finished within 30 s`)), 30_000);
        finishers.set(jobId, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const t0 = performance.now();
      await pool.query(`UPDATE jobs_variants SET status = 'done' WHERE job_variants_id = $1`, [id]);
      const at = await arrived;
      if (measuring) trigger.push(at - t0);
      await finished;
      waiters.delete(id);
      finishers.delete(jobId);
      lastDone.delete(jobId);
      if ((i + 1) % 200 === 0) o.log?.(`  latency: ${i + 1}/${rows.length} samples`);
    }
    await Promise.all(workers.map((w) => w.stop()));
    workers = [];
    return {
      samples: trigger.length,
      trigger: percentiles(trigger),
      hops: percentiles(hops),
      fanInHop: percentiles(fanIn),
    };
  } finally {
    await Promise.all(workers.map((w) => w.kill()));
    await double.close();
    await pool.end().catch(() => {});
    await dropDatabase(bench.server, url).catch(() => {});
  }
}

/**
 * Stage server benchmark, on the CPU fallbacks (no VLM, LLM or YOLO
 * configured):
 * - CPU time (process.cpuUsage, worker threads included) and wall time of each
 *   stage on each sample photo: buildApp, then app.inject of every route in
 *   order on a seeded one-variant job per photo;
 * - a 3-variant job end to end: the stage server listening with the listener
 *   plugin hosted, from (img_gen,'done') to (instagram_feed_gen,'done').
 */
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { AUTOMATIC_STEPS, isJobLevel, routeOf } from '@feedlyai/pipeline-core';
import { buildApp } from '@feedlyai/stage-api';
import { freePort, jobState, markImgGenDone, seedJob, waitFor } from '@feedlyai/test-tools/db';
import pg from 'pg';
import { type BenchServer, dropDatabase } from './db.js';
import { round } from './stats.js';

export interface StageStepFigure {
  photo: string;
  step: string;
  status: number;
  wallMs: number;
  cpuMs: number;
}

export interface StageBenchResult {
  steps: StageStepFigure[];
  /** Per step over all photos: mean CPU ms. */
  meanCpuMsByStep: Record<string, number>;
  endToEnd?: { photo: string; variants: number; seconds: number; status: string };
}

/** The sample photos shipped with the stage server's tests. */
export const PHOTO_DIR = fileURLToPath(new URL('../../../apps/stage-api/test/fixtures/', import.meta.url));

export async function samplePhotos(): Promise<string[]> {
  return (await readdir(PHOTO_DIR)).filter((f) => /\.(png|jpe?g|webp)$/i.test(f)).sort();
}

export async function stageBenchmark(
  bench: BenchServer,
  o: { maxPhotos: number; log?: (l: string) => void },
): Promise<StageBenchResult> {
  const url = await bench.freshDatabase('stage');
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', () => {});
  const storageDir = await mkdtemp(join(tmpdir(), 'feedly-bench-storage-'));
  try {
    await mkdir(join(storageDir, 'inputs'), { recursive: true });
    // coffee.png first: the product photo the quick run uses.
    const all = await samplePhotos();
    const photos = [...all.filter((p) => p === 'coffee.png'), ...all.filter((p) => p !== 'coffee.png')].slice(
      0,
      o.maxPhotos,
    );
    for (const p of photos) await copyFile(join(PHOTO_DIR, p), join(storageDir, 'inputs', p));
    const steps: StageStepFigure[] = [];
    const app = await buildApp({
      env: {},
      pool,
      storageDir,
      listener: false,
      logger: false,
      cpuWorkers: 1,
    });
    try {
      await app.ready();
      for (const photo of photos) {
        const job = await seedJob(pool, {
          imageUrl: `inputs/${photo}`,
          variants: 1,
          variantStep: 'img_gen',
          variantStatus: 'done',
          taglineKor: '오늘의 핸드드립',
        });
        for (const step of AUTOMATIC_STEPS) {
          const payload: Record<string, unknown> = { job_id: job.jobId, tenant_id: job.tenantId };
          if (!isJobLevel(step)) payload.job_variants_id = job.variantIds[0];
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          const res = await app.inject({ method: 'POST', url: routeOf(step), payload });
          const wallMs = performance.now() - t0;
          const cpu = process.cpuUsage(cpu0);
          steps.push({
            photo,
            step,
            status: res.statusCode,
            wallMs: round(wallMs, 1),
            cpuMs: round((cpu.user + cpu.system) / 1000, 1),
          });
          if (res.statusCode !== 200) {
            o.log?.(`  stage: ${photo} ${step} answered ${res.statusCode}: ${res.body.slice(0, 200)}`);
            break;
          }
        }
        o.log?.(`  stage: ${photo} done`);
      }
    } finally {
      await app.close();
    }
    const meanCpuMsByStep: Record<string, number> = {};
    for (const step of AUTOMATIC_STEPS) {
      const xs = steps.filter((s) => s.step === step && s.status === 200).map((s) => s.cpuMs);
      if (xs.length) meanCpuMsByStep[step] = round(xs.reduce((a, b) => a + b, 0) / xs.length, 1);
    }
    const result: StageBenchResult = { steps, meanCpuMsByStep };
    const e2ePhoto = photos.includes('coffee.png') ? 'coffee.png' : photos[0];
    if (e2ePhoto) result.endToEnd = await endToEnd(pool, url, storageDir, e2ePhoto);
    return result;
  } finally {
    await pool.end().catch(() => {});
    await rm(storageDir, { recursive: true, force: true });
    await dropDatabase(bench.server, url).catch(() => {});
  }
}

/** One 3-variant job through the stage server listening with the listener hosted. */
async function endToEnd(
  pool: pg.Pool,
  databaseUrl: string,
  storageDir: string,
  photo: string,
): Promise<{ photo: string; variants: number; seconds: number; status: string }> {
  const port = await freePort();
  const app = await buildApp({
    env: {},
    pool,
    storageDir,
    logger: false,
    cpuWorkers: 1,
    port,
    host: '127.0.0.1',
    listener: { connectionString: databaseUrl, stageApiUrl: `http://127.0.0.1:${port}`, recoveryInterval: 5 },
  });
  try {
    await app.listen({ port, host: '127.0.0.1' });
    const job = await seedJob(pool, {
      imageUrl: `inputs/${photo}`,
      variants: 3,
      variantStep: 'img_gen',
      variantStatus: 'queued',
      taglineKor: '오늘의 핸드드립',
    });
    const t0 = performance.now();
    await markImgGenDone(pool, job.variantIds);
    const final = await waitFor(
      async () => {
        const s = await jobState(pool, job.jobId);
        if (s.current_step === 'instagram_feed_gen' && s.status === 'done') return s;
        if (s.failure_reason) return s;
        return null;
      },
      { timeoutMs: 300_000, intervalMs: 50, message: 'end-to-end job' },
    );
    return {
      photo,
      variants: 3,
      seconds: round((performance.now() - t0) / 1000, 2),
      status: final.failure_reason ? `failed: ${final.failure_reason}` : `${final.current_step}/${final.status}`,
    };
  } finally {
    await app.close();
  }
}

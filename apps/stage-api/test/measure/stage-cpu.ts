/**
 * Measures each stage by hand (not a test): CPU time (process.cpuUsage, all
 * threads of the process, so worker threads and tesseract count), wall time
 * and the event-loop delay p99/max while the stage runs, on the sample
 * photos, with the CPU fallbacks. Also prints the quality figures of the
 * creatives (OCR CER per line, text/object IoU, contrast).
 *
 * Run from apps/stage-api with the TypeScript loader tap uses, e.g.:
 *   node --import=$(node -p "require.resolve('@tapjs/typescript/import')") test/measure/stage-cpu.ts [photo...]
 * STAGE_CPU_WORKERS (default 1) chooses worker threads or inline (0); MEASURE_DIST=1 measures the
 * compiled dist/ (run `pnpm --filter @feedlyai/stage-api build` first) instead of the TypeScript source.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, seedJob } from '@feedlyai/test-helpers';
import { migrateAll } from '../helpers.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const OUT = fileURLToPath(new URL('../../test-output/measure/', import.meta.url));
const STEPS: Array<[string, string, boolean]> = [
  ['vlm_analyze', '/api/yh/llava/stage1/validate', false],
  ['yolo_detect', '/api/yh/yolo/detect', false],
  ['planner', '/api/yh/planner/propose', false],
  ['overlay', '/api/yh/overlay/render', false],
  ['vlm_judge', '/api/yh/llava/stage2/judge', false],
  ['ocr_eval', '/api/yh/evals/ocr', false],
  ['readability_eval', '/api/yh/evals/readability', false],
  ['iou_eval', '/api/yh/evals/iou', false],
  ['ad_copy_gen_kor', '/api/yh/gpt/ad-copy-kor', true],
  ['instagram_feed_gen', '/api/yh/instagram/feed', true],
];

async function main(): Promise<void> {
  const photos = process.argv.slice(2).length ? process.argv.slice(2) : ['coffee.png'];
  const workers = Number(process.env.STAGE_CPU_WORKERS ?? 1);
  const { buildApp } = (await import(
    process.env.MEASURE_DIST === '1' ? '../../dist/app.js' : '../../src/app.js'
  )) as typeof import('../../src/app.js');
  const db = await createTestDatabase({ migrate: migrateAll });
  const storage = await mkdtemp(path.join(tmpdir(), 'stage-measure-'));
  await mkdir(path.join(storage, 'inputs'), { recursive: true });
  await mkdir(OUT, { recursive: true });
  const app = await buildApp({
    env: {},
    pool: db.pool,
    storageDir: storage,
    listener: false,
    logger: false,
    cpuWorkers: workers,
  });
  await app.ready();
  const eld = monitorEventLoopDelay({ resolution: 1 });
  try {
    for (const photo of photos) {
      await copyFile(path.join(FIXTURES, photo), path.join(storage, 'inputs', photo));
      // Two variants: the first pays the warm-up (workers, fonts, OCR data), the second is the steady state.
      const job = await seedJob(db.pool, {
        imageUrl: `inputs/${photo}`,
        variants: 2,
        variantStep: 'img_gen',
        variantStatus: 'done',
        taglineKor: '오늘의 핸드드립',
      });
      console.log(
        `\n== ${photo} (cpu work: ${workers > 0 ? `${workers} worker thread(s)` : 'inline'}, ${process.env.MEASURE_DIST === '1' ? 'dist' : 'src'}) ==`,
      );
      console.log('step                 variant  cpu_ms  wall_ms  eld_p99_ms  eld_max_ms  status');
      for (const [step, url, jobLevel] of STEPS) {
        const subjects = jobLevel ? [undefined] : job.variantIds;
        for (const [i, id] of subjects.entries()) {
          eld.reset();
          eld.enable();
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          const r = await app.inject({
            method: 'POST',
            url,
            payload: { job_id: job.jobId, tenant_id: job.tenantId, ...(id ? { job_variants_id: id } : {}) },
          });
          const wall = performance.now() - t0;
          const cpu = process.cpuUsage(cpu0);
          eld.disable();
          console.log(
            `${step.padEnd(20)} ${(jobLevel ? 'job' : String(i + 1)).padEnd(8)} ${String(Math.round((cpu.user + cpu.system) / 1000)).padStart(6)}  ${String(Math.round(wall)).padStart(7)}  ${(eld.percentile(99) / 1e6).toFixed(1).padStart(10)}  ${(eld.max / 1e6).toFixed(1).padStart(10)}  ${r.statusCode}${r.statusCode !== 200 ? ` ${r.body.slice(0, 200)}` : ''}`,
          );
        }
      }
      const ocr = await db.pool.query(
        `SELECT v.creation_order, o.role, o.lang, o.expected, o.read, o.cer, o.confidence
           FROM stage_ocr_evals o JOIN jobs_variants v USING (job_variants_id) WHERE o.job_id = $1 ORDER BY 1, o.id`,
        [job.jobId],
      );
      for (const r of ocr.rows) {
        console.log(
          `ocr v${r.creation_order} ${r.role}/${r.lang}: cer=${(r.cer * 100).toFixed(1)}% conf=${Math.round(r.confidence)} expected=${JSON.stringify(r.expected)} read=${JSON.stringify(r.read)}`,
        );
      }
      const ev = await db.pool.query(
        `SELECT v.creation_order, i.max_iou, i.max_io_text, r.min_contrast, r.max_clutter, r.pass, o.image_key, o.treatment->>'name' AS treatment
           FROM jobs_variants v
           JOIN stage_iou_evals i USING (job_variants_id)
           JOIN stage_readability_evals r USING (job_variants_id)
           JOIN stage_overlays o USING (job_variants_id)
          WHERE v.job_id = $1 ORDER BY 1`,
        [job.jobId],
      );
      for (const r of ev.rows) {
        console.log(
          `v${r.creation_order} treatment=${r.treatment} maxIoU=${r.max_iou} maxIoText=${r.max_io_text} minContrastP5=${Number(r.min_contrast).toFixed(2)} maxClutter=${Number(r.max_clutter).toFixed(3)} pass=${r.pass}`,
        );
        await copyFile(
          path.join(storage, r.image_key),
          path.join(OUT, `${path.parse(photo).name}-v${r.creation_order}.png`),
        );
      }
    }
  } finally {
    await app.close();
    await db.close();
    await rm(storage, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

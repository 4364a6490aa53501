/**
 * yolo_detect: the objects in the photo, by the YOLO model when its file is
 * configured, else by saliency. Stores stage_detections.
 */
import type { Detection } from '../vision/types.js';
import { abortable, cpuOr, j, loadSourceImage, variantOf, vision } from './common.js';
import type { StageDefinition } from './runner.js';

export const yoloDetect: StageDefinition = {
  step: 'yolo_detect',
  resources: (ctx) => cpuOr(ctx.backends.yoloModelPath !== null, 'yolo'),
  async execute(ctx, run) {
    const v = variantOf(run);
    const bytes = await loadSourceImage(ctx, run);
    const t0 = performance.now();
    let detections: Detection[];
    let size: { width: number; height: number };
    let method: string;
    let model: string | null = null;
    const detector = await ctx.backends.yolo();
    if (detector) {
      const img = await (await vision()).decodeImage(bytes);
      size = { width: img.width, height: img.height };
      detections = await detector.detect(img);
      method = 'yolo';
      model = ctx.backends.yoloModelPath;
      ctx.metrics.modelCalls.inc({ backend: 'yolo', outcome: 'ok' });
    } else {
      const r = await ctx.cpu.run('saliency', [bytes], abortable(run));
      detections = r.detections;
      size = { width: r.width, height: r.height };
      method = 'saliency';
      ctx.metrics.modelCalls.inc({ backend: 'yolo_fallback', outcome: 'ok' });
    }
    const ms = Math.round(performance.now() - t0);
    return {
      method,
      summary: { detections, ...size },
      async persist(c) {
        await c.query(
          `INSERT INTO stage_detections (job_id, job_variants_id, attempt, method, model, image_width, image_height,
             detections, detection_count, duration_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [
            run.jobId,
            v.job_variants_id,
            run.attempt,
            method,
            model,
            size.width,
            size.height,
            j(detections),
            detections.length,
            ms,
          ],
        );
      },
    };
  },
};

/**
 * iou_eval: every text box against every detected object. Stores
 * stage_iou_evals.
 */
import { latestOverlay } from '../db/queries.js';
import { j, requireDetections, variantOf, vision } from './common.js';
import type { StageDefinition } from './runner.js';

export const iouEval: StageDefinition = {
  step: 'iou_eval',
  // A few boxes compared on the main thread: nothing bounded to wait for.
  resources: () => [],
  async execute(ctx, run) {
    const v = variantOf(run);
    const ov = await latestOverlay(ctx.pool, v.job_variants_id);
    if (!ov) throw new Error('no overlay stored for this variant: run overlay first');
    const detections = await requireDetections(ctx, run);
    const r = (await vision()).iouEvaluate(ov.layout, detections);
    return {
      method: 'measured',
      summary: { max_iou: r.maxIou, max_io_text: r.maxIoText, pairs: r.pairs.length },
      async persist(c) {
        await c.query(
          `INSERT INTO stage_iou_evals (job_id, job_variants_id, attempt, method, pairs, max_iou, max_io_text, overlay_id)
           VALUES ($1, $2, $3, 'measured', $4, $5, $6, $7)`,
          [run.jobId, v.job_variants_id, run.attempt, j(r.pairs), r.maxIou, r.maxIoText, ov.id],
        );
      },
    };
  },
};

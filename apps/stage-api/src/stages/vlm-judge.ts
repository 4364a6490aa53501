/**
 * vlm_judge: a 0 to 10 score of the finished creative, its problems and a
 * rationale; the VLM when configured, else the CPU heuristic. Stores
 * stage_vlm_judgements.
 */
import { abortable, callOpts, cpuOr, j, requireDetections, requireOverlay, variantOf } from './common.js';
import type { StageDefinition } from './runner.js';

export const vlmJudge: StageDefinition = {
  step: 'vlm_judge',
  resources: (ctx) => cpuOr(ctx.backends.vlm !== null, 'vlm'),
  async execute(ctx, run) {
    const v = variantOf(run);
    const { overlay: ov, png } = await requireOverlay(ctx, run);
    const detections = await requireDetections(ctx, run);
    let judgement: { score: number; problems: string[]; rationale: string };
    let method: string;
    let model: string | null = null;
    if (ctx.backends.vlm) {
      const a = await ctx.backends.vlm.judge(png, ov.layout, callOpts(run)).catch((err: unknown) => {
        ctx.metrics.modelCalls.inc({ backend: 'vlm', outcome: 'error' });
        throw err;
      });
      ctx.metrics.modelCalls.inc({ backend: 'vlm', outcome: 'ok' });
      judgement = a.judgement;
      model = a.model;
      method = 'vlm';
    } else {
      judgement = await ctx.cpu.run('judge', [png, ov.layout, detections], abortable(run));
      method = 'heuristic';
    }
    return {
      method,
      summary: { score: judgement.score, problems: judgement.problems },
      async persist(c) {
        await c.query(
          `INSERT INTO stage_vlm_judgements (job_id, job_variants_id, attempt, method, model, score, problems, rationale, overlay_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          [
            run.jobId,
            v.job_variants_id,
            run.attempt,
            method,
            model,
            judgement.score,
            j(judgement.problems),
            judgement.rationale,
            ov.id,
          ],
        );
      },
    };
  },
};

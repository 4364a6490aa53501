/**
 * readability_eval: contrast and clutter under each text line, against
 * thresholds. Stores stage_readability_evals.
 */
import { abortable, j, requireOverlay, variantOf } from './common.js';
import type { StageDefinition } from './runner.js';

export const readabilityEval: StageDefinition = {
  step: 'readability_eval',
  resources: () => ['render'],
  async execute(ctx, run) {
    const v = variantOf(run);
    const { overlay: ov, png } = await requireOverlay(ctx, run);
    const r = await ctx.cpu.run('readability', [png, ov.layout], abortable(run));
    const minContrast = r.lines.length ? Math.min(...r.lines.map((l) => l.contrastP5)) : null;
    const maxClutter = r.lines.length ? Math.max(...r.lines.map((l) => l.clutter)) : null;
    return {
      method: 'measured',
      summary: {
        pass: r.pass,
        min_contrast: minContrast,
        max_clutter: maxClutter,
        thresholds: r.thresholds,
        lines: r.lines,
      },
      async persist(c) {
        await c.query(
          `INSERT INTO stage_readability_evals (job_id, job_variants_id, attempt, method, lines, min_contrast, max_clutter,
             thresholds, pass, overlay_id)
           VALUES ($1, $2, $3, 'measured', $4, $5, $6, $7, $8, $9)`,
          [
            run.jobId,
            v.job_variants_id,
            run.attempt,
            j(r.lines),
            minContrast,
            maxClutter,
            j(r.thresholds),
            r.pass,
            ov.id,
          ],
        );
      },
    };
  },
};

/**
 * vlm_analyze: is the product photo usable, what it shows, its colours and
 * problems; the VLM when configured, else the CPU heuristic. Stores
 * stage_vlm_analyses.
 */
import type pg from 'pg';
import { abortable, callOpts, cpuOr, j, loadSourceImage, variantOf } from './common.js';
import type { StageDefinition } from './runner.js';

export const vlmAnalyze: StageDefinition = {
  step: 'vlm_analyze',
  resources: (ctx) => cpuOr(ctx.backends.vlm !== null, 'vlm'),
  async execute(ctx, run) {
    const v = variantOf(run);
    const bytes = await loadSourceImage(ctx, run);
    const t0 = performance.now();
    let method: string;
    let model: string | null = null;
    let analysis: {
      usable: boolean;
      description: string;
      dominantColors: string[];
      problems: string[];
      metrics?: Record<string, number>;
    };
    let size: { width: number; height: number };
    if (ctx.backends.vlm) {
      size = await ctx.cpu.run('probe', [bytes], abortable(run)); // a corrupt image fails here, before the model call
      const a = await ctx.backends.vlm.analyze(bytes, callOpts(run)).catch((err: unknown) => {
        ctx.metrics.modelCalls.inc({ backend: 'vlm', outcome: 'error' });
        throw err;
      });
      ctx.metrics.modelCalls.inc({ backend: 'vlm', outcome: 'ok' });
      analysis = a.analysis;
      model = a.model;
      method = 'vlm';
    } else {
      const a = await ctx.cpu.run('analyze', [bytes], abortable(run));
      size = { width: a.width, height: a.height };
      analysis = a;
      method = 'heuristic';
      ctx.metrics.modelCalls.inc({ backend: 'vlm_fallback', outcome: 'ok' });
    }
    const ms = Math.round(performance.now() - t0);
    return {
      method,
      summary: { usable: analysis.usable, description: analysis.description, problems: analysis.problems, ...size },
      async persist(c: pg.PoolClient) {
        await c.query(
          `INSERT INTO stage_vlm_analyses (job_id, job_variants_id, attempt, method, model, usable, description,
             dominant_colors, problems, metrics, duration_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
          [
            run.jobId,
            v.job_variants_id,
            run.attempt,
            method,
            model,
            analysis.usable,
            analysis.description,
            j(analysis.dominantColors),
            j(analysis.problems),
            analysis.metrics ? j(analysis.metrics) : null,
            ms,
          ],
        );
      },
    };
  },
};

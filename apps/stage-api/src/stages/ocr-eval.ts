/**
 * ocr_eval: reads every rendered text line back with tesseract and its
 * character error rate. Stores one stage_ocr_evals row per line.
 */
import { abortable, requireOverlay, variantOf } from './common.js';
import type { StageDefinition } from './runner.js';

export const ocrEval: StageDefinition = {
  step: 'ocr_eval',
  resources: () => ['ocr'],
  async execute(ctx, run) {
    const v = variantOf(run);
    const { overlay: ov, png } = await requireOverlay(ctx, run);
    const engine = await ctx.backends.ocr();
    const lines = await engine.evaluate(png, ov.layout, abortable(run));
    return {
      method: 'tesseract',
      summary: {
        lines: lines.map((l) => ({
          role: l.role,
          lang: l.lang,
          expected: l.expected,
          read: l.read,
          cer: l.cer,
          confidence: l.confidence,
        })),
        max_cer: lines.reduce((m, l) => Math.max(m, l.cer), 0),
      },
      async persist(c) {
        for (const l of lines) {
          await c.query(
            `INSERT INTO stage_ocr_evals (job_id, job_variants_id, attempt, method, role, lang, expected, read, cer, confidence, overlay_id)
             VALUES ($1, $2, $3, 'tesseract', $4, $5, $6, $7, $8, $9, $10)`,
            [run.jobId, v.job_variants_id, run.attempt, l.role, l.lang, l.expected, l.read, l.cer, l.confidence, ov.id],
          );
        }
      },
    };
  },
};

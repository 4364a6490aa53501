/**
 * ad_copy_gen_kor (job level): the Korean ad copy, by the LLM when
 * configured, else the template. Updates the job's job_ad_copies row.
 */
import { callOpts } from './common.js';
import { koreanCopy, requireInputs, resolveAdCopy } from './copy.js';
import type { StageDefinition } from './runner.js';

export const adCopyKor: StageDefinition = {
  step: 'ad_copy_gen_kor',
  resources: (ctx) => (ctx.backends.llm ? ['llm'] : []),
  async execute(ctx, run) {
    const inputs = await requireInputs(ctx.pool, run.jobId);
    const copy = await resolveAdCopy(ctx.pool, ctx.backends.llm, run.jobId, callOpts(run));
    const kor = await koreanCopy(ctx.backends.llm, inputs, copy.headline_eng, callOpts(run));
    return {
      method: kor.method,
      summary: { headline_eng: copy.headline_eng, headline_method: copy.eng_method, ad_copy_kor: kor.text },
      async persist(c) {
        await c.query(
          `UPDATE job_ad_copies SET ad_copy_kor = $2, kor_method = $3, kor_model = $4, kor_attempt = $5, kor_created_at = now()
            WHERE job_id = $1`,
          [run.jobId, kor.text, kor.method, kor.model, run.attempt],
        );
      },
    };
  },
};

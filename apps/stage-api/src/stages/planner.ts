/**
 * planner: where the ad text goes (every proposal scored, the chosen one),
 * and a preview image of the proposals. Stores stage_planner_proposals and
 * the preview as an image_assets row.
 */
import sharp from 'sharp';
import type { Detection, PlacementProposal } from '../vision/types.js';
import {
  abortable,
  callOpts,
  j,
  loadSourceImage,
  registerAsset,
  requireDetections,
  storeImage,
  texts,
  variantOf,
} from './common.js';
import { resolveAdCopy } from './copy.js';
import type { StageDefinition } from './runner.js';

/** A preview of the planner's proposals: rejected in red, valid in yellow, the chosen one in green. */
async function plannerPreview(
  bytes: Uint8Array,
  width: number,
  height: number,
  proposals: PlacementProposal[],
  detections: Detection[],
  chosen: number,
): Promise<Buffer> {
  const rect = (b: { x: number; y: number; w: number; h: number }, color: string, w: number, dash = '') =>
    `<rect x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" fill="none" stroke="${color}" stroke-width="${w}"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`;
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 300));
  const parts = [
    ...detections.map((d) => rect(d.box, '#00b4ff', stroke, `${stroke * 4} ${stroke * 2}`)),
    ...proposals.map((p, i) =>
      i === chosen ? '' : rect(p.region, p.rejected ? 'rgba(255,60,60,0.6)' : 'rgba(255,210,0,0.8)', stroke),
    ),
    proposals[chosen] ? rect((proposals[chosen] as PlacementProposal).region, '#00e060', stroke * 2) : '',
  ];
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
  return await sharp(bytes)
    .rotate()
    .resize(width, height, { fit: 'fill' })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .png()
    .toBuffer();
}

export const planner: StageDefinition = {
  step: 'planner',
  resources: () => ['render'],
  async execute(ctx, run) {
    const v = variantOf(run);
    const detections = await requireDetections(ctx, run);
    const copy = await resolveAdCopy(ctx.pool, ctx.backends.llm, run.jobId, callOpts(run));
    const bytes = await loadSourceImage(ctx, run);
    const plan = await ctx.cpu.run('plan', [bytes, detections, texts(copy), v.creation_order], abortable(run));
    if (plan.proposals.length === 0) throw new Error('the planner produced no proposal');
    const chosen = plan.proposals[plan.chosen];
    if (!chosen || chosen.rejected) {
      throw new Error(`no valid text placement: every proposal was rejected (${plan.proposals.length} tried)`);
    }
    const preview = await storeImage(
      ctx,
      await plannerPreview(bytes, plan.width, plan.height, plan.proposals, detections, plan.chosen),
      'planner',
    );
    return {
      method: 'measured',
      summary: {
        proposals: plan.proposals.length,
        valid: plan.proposals.filter((p) => !p.rejected).length,
        chosen_rank: chosen.rank,
        chosen_score: chosen.score,
        preview_image_key: preview.key,
      },
      async persist(c) {
        const assetId = await registerAsset(c, run, preview, 'planner_preview');
        for (const [i, p] of plan.proposals.entries()) {
          await c.query(
            `INSERT INTO stage_planner_proposals (job_id, job_variants_id, attempt, method, rank, region, lines, score,
               components, rejected_reason, chosen, preview_asset_id, preview_image_key, anchor, proposal)
             VALUES ($1, $2, $3, 'measured', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
            [
              run.jobId,
              v.job_variants_id,
              run.attempt,
              p.rank,
              j(p.region),
              j(p.lines),
              Number.isFinite(p.score) ? p.score : 0,
              j(p.components),
              p.rejected,
              i === plan.chosen,
              assetId,
              preview.key,
              p.anchor ?? null,
              j(p),
            ],
          );
        }
      },
    };
  },
};

/**
 * overlay: renders the creative on the chosen placement. Reads the chosen
 * proposal and the photo's analysis; stores stage_overlays and the image as
 * an image_assets row.
 */
import type { Queryable } from '@feedlyai/pipeline-core';
import type { ImageAnalysis, PlacementProposal } from '../vision/types.js';
import { abortable, callOpts, j, loadSourceImage, registerAsset, storeImage, texts, variantOf } from './common.js';
import { resolveAdCopy } from './copy.js';
import type { StageDefinition } from './runner.js';

/** The newest vlm_analyze result of the variant (the renderer picks colours from it). */
async function latestAnalysis(db: Queryable, variantId: string): Promise<(ImageAnalysis & { method: string }) | null> {
  const r = await db.query<{
    usable: boolean;
    description: string;
    dominant_colors: string[];
    problems: string[];
    metrics: Record<string, number> | null;
    method: string;
  }>(
    `SELECT usable, description, dominant_colors, problems, metrics, method FROM stage_vlm_analyses
      WHERE job_variants_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
    [variantId],
  );
  const row = r.rows[0];
  if (!row) return null;
  return {
    usable: row.usable,
    description: row.description,
    dominantColors: row.dominant_colors,
    problems: row.problems,
    ...(row.metrics ? { metrics: row.metrics } : {}),
    method: row.method,
  };
}

/** The newest chosen placement of the variant, as the planner stored it. */
async function chosenProposal(db: Queryable, variantId: string): Promise<PlacementProposal | null> {
  const r = await db.query<{
    rank: number;
    region: PlacementProposal['region'];
    lines: PlacementProposal['lines'];
    score: number;
    components: Record<string, number>;
    rejected_reason: string | null;
    proposal: PlacementProposal | null;
  }>(
    `SELECT rank, region, lines, score, components, rejected_reason, proposal FROM stage_planner_proposals
      WHERE job_variants_id = $1 AND chosen
      ORDER BY created_at DESC, id DESC LIMIT 1`,
    [variantId],
  );
  const row = r.rows[0];
  if (!row) return null;
  // The stored proposal is the planner's own object (anchor, canvas extension, ...).
  if (row.proposal && Array.isArray(row.proposal.lines)) return row.proposal;
  return {
    rank: row.rank,
    region: row.region,
    lines: row.lines,
    score: row.score,
    components: row.components,
    rejected: row.rejected_reason,
  };
}

export const overlay: StageDefinition = {
  step: 'overlay',
  resources: () => ['render'],
  async execute(ctx, run) {
    const v = variantOf(run);
    const proposal = await chosenProposal(ctx.pool, v.job_variants_id);
    if (!proposal) throw new Error('no chosen planner proposal stored for this variant: run planner first');
    const copy = await resolveAdCopy(ctx.pool, ctx.backends.llm, run.jobId, callOpts(run));
    const analysis = await latestAnalysis(ctx.pool, v.job_variants_id);
    const bytes = await loadSourceImage(ctx, run);
    const t = texts(copy);
    const out = await ctx.cpu.run(
      'render',
      [bytes, proposal, t, v.creation_order, analysis ?? undefined],
      abortable(run),
    );
    const png = Buffer.from(out.png.buffer, out.png.byteOffset, out.png.byteLength);
    const stored = await storeImage(ctx, png, 'overlay');
    return {
      method: copy.eng_method,
      summary: {
        headline: t.headline,
        tagline: t.tagline ?? null,
        headline_method: copy.eng_method,
        treatment: out.treatment.name,
        proposal_rank: proposal.rank,
        image_key: stored.key,
        width: stored.width,
        height: stored.height,
      },
      async persist(c) {
        const assetId = await registerAsset(c, run, stored, 'overlay');
        await c.query(
          `INSERT INTO stage_overlays (job_id, job_variants_id, attempt, method, headline, tagline, texts, treatment,
             layout, proposal_rank, image_key, image_asset_id, width, height)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
          [
            run.jobId,
            v.job_variants_id,
            run.attempt,
            copy.eng_method,
            t.headline,
            t.tagline ?? null,
            j(t),
            j(out.treatment),
            j(out.layout),
            proposal.rank,
            stored.key,
            assetId,
            stored.width,
            stored.height,
          ],
        );
      },
    };
  },
};

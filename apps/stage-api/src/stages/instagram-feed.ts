/**
 * instagram_feed_gen (job level): scores every variant that reached
 * (iou_eval, done) on its evaluations, builds the feed image from the best
 * one, and writes the caption and hashtags. Stores stage_instagram_feeds and
 * the feed image as an image_assets row.
 */
import type { Queryable } from '@feedlyai/pipeline-core';
import { getAdCopy, latestOverlay, listVariants, type OverlayRow, type VariantRow } from '../db/queries.js';
import type { IouResult, Judgement, OcrLineResult, ReadabilityResult } from '../vision/types.js';
import { callOpts, j, registerAsset, storeImage, vision } from './common.js';
import { instagramPost, requireInputs } from './copy.js';
import type { StageDefinition } from './runner.js';

/** Everything the feed step scores, per variant (newest rows). */
interface VariantEvals {
  job_variants_id: string;
  creation_order: number;
  overlay: OverlayRow | null;
  judge: (Judgement & { method: string }) | null;
  ocr: OcrLineResult[];
  readability: ReadabilityResult | null;
  iou: IouResult | null;
}

async function variantEvals(db: Queryable, v: VariantRow): Promise<VariantEvals> {
  const id = v.job_variants_id;
  const overlay = await latestOverlay(db, id);
  const judge = await db.query<{ score: number; problems: string[]; rationale: string; method: string }>(
    `SELECT score, problems, rationale, method FROM stage_vlm_judgements
      WHERE job_variants_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
    [id],
  );
  // OCR rows of the newest run only.
  const ocr = await db.query<OcrLineResult>(
    `SELECT role, lang, expected, read, cer, confidence FROM stage_ocr_evals
      WHERE job_variants_id = $1
        AND created_at = (SELECT max(created_at) FROM stage_ocr_evals WHERE job_variants_id = $1)
      ORDER BY id`,
    [id],
  );
  const read = await db.query<{
    lines: ReadabilityResult['lines'];
    thresholds: ReadabilityResult['thresholds'];
    pass: boolean;
  }>(
    `SELECT lines, thresholds, pass FROM stage_readability_evals
      WHERE job_variants_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
    [id],
  );
  const iou = await db.query<{ pairs: IouResult['pairs']; max_iou: number; max_io_text: number }>(
    `SELECT pairs, max_iou, max_io_text FROM stage_iou_evals
      WHERE job_variants_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
    [id],
  );
  const i = iou.rows[0];
  return {
    job_variants_id: id,
    creation_order: v.creation_order,
    overlay,
    judge: judge.rows[0] ?? null,
    ocr: ocr.rows,
    readability: read.rows[0] ?? null,
    iou: i ? { pairs: i.pairs, maxIou: i.max_iou, maxIoText: i.max_io_text } : null,
  };
}

export const instagramFeed: StageDefinition = {
  step: 'instagram_feed_gen',
  resources: (ctx) => (ctx.backends.llm ? ['llm', 'render'] : ['render']),
  async execute(ctx, run) {
    const inputs = await requireInputs(ctx.pool, run.jobId);
    const variants = (await listVariants(ctx.pool, run.jobId)).filter(
      (v) => v.current_step === 'iou_eval' && v.status === 'done',
    );
    if (variants.length === 0) throw new Error('no variant of the job reached (iou_eval, done)');
    const table: Array<{
      job_variants_id: string;
      creation_order: number;
      score: number;
      components: Record<string, number>;
    }> = [];
    const evalsById = new Map<string, Awaited<ReturnType<typeof variantEvals>>>();
    for (const v of variants) {
      const e = await variantEvals(ctx.pool, v);
      evalsById.set(v.job_variants_id, e);
      if (!e.overlay) continue;
      if (!e.judge || !e.readability || !e.iou) continue;
      const s = (await vision()).scoreVariant({ judge: e.judge, ocr: e.ocr, readability: e.readability, iou: e.iou });
      table.push({ job_variants_id: v.job_variants_id, creation_order: v.creation_order, ...s });
    }
    if (table.length === 0) throw new Error('no variant of the job has an overlay and all its evaluations to score');
    table.sort((a, b) => b.score - a.score || a.creation_order - b.creation_order);
    const best = table[0] as (typeof table)[number];
    const ov = evalsById.get(best.job_variants_id)?.overlay as OverlayRow;
    const feedPng = await (await vision()).composeFeedImage(await ctx.storage.read(ov.image_key));
    const stored = await storeImage(ctx, feedPng, 'feed');
    const copy = await getAdCopy(ctx.pool, run.jobId);
    const post = await instagramPost(
      ctx.backends.llm,
      inputs,
      { headline: copy?.headline_eng ?? ov.headline, adCopyKor: copy?.ad_copy_kor ?? null },
      callOpts(run),
    );
    return {
      method: post.method,
      summary: {
        chosen_variant_id: best.job_variants_id,
        scores: table,
        caption: post.caption,
        hashtags: post.hashtags,
        feed_image_key: stored.key,
        width: stored.width,
        height: stored.height,
      },
      async persist(c) {
        const assetId = await registerAsset(c, run, stored, 'instagram_feed');
        await c.query(
          `INSERT INTO stage_instagram_feeds (job_id, attempt, method, model, chosen_variant_id, scores, caption, hashtags,
             feed_image_key, feed_asset_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [
            run.jobId,
            run.attempt,
            post.method,
            post.model,
            best.job_variants_id,
            j(table),
            post.caption,
            j(post.hashtags),
            stored.key,
            assetId,
          ],
        );
      },
    };
  },
};

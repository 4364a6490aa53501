/**
 * The ten stages: what each reads, which backend or fallback it uses, what it
 * stores. The state machine around them is runner.ts; the algorithms are
 * ../vision and ../text. Every model call, worker task and OCR run carries
 * the request's AbortSignal and deadline (docs/stage-api.md, "Deadline").
 */
import { createHash } from 'node:crypto';
import type { Queryable, Step } from '@feedlyai/pipeline-core';
import type pg from 'pg';
import sharp from 'sharp';
import {
  chosenProposal,
  getAdCopy,
  insertAsset,
  latestAnalysis,
  latestDetections,
  latestOverlay,
  listVariants,
  type OverlayRow,
  type VariantRow,
  variantEvals,
} from '../db/queries.js';
import type { AdTexts, Detection, PlacementProposal } from '../vision/types.js';
import { instagramPost, koreanCopy, requireInputs, resolveAdCopy } from './copy.js';
import type { StageContext, StageDefinition, StageOutput, StageRun } from './runner.js';

/** The request's signal and deadline, for model calls. */
const callOpts = (run: StageRun) => ({ signal: run.signal, deadline: run.deadline });
/** The request's signal, for worker tasks and OCR. */
const abortable = (run: StageRun) => ({ signal: run.signal });

function variantOf(run: StageRun): VariantRow {
  if (!run.variant) throw new Error(`${run.step} is a variant-level step`);
  return run.variant;
}

/** The variant's source image bytes (its img_asset_id, else the job input's image). */
async function loadSourceImage(ctx: StageContext, run: StageRun): Promise<Uint8Array> {
  const v = variantOf(run);
  let assetId = v.img_asset_id;
  if (!assetId) {
    const r = await ctx.pool.query<{ img_asset_id: string | null }>(
      'SELECT img_asset_id FROM job_inputs WHERE job_id = $1 ORDER BY created_at DESC LIMIT 1',
      [run.jobId],
    );
    assetId = r.rows[0]?.img_asset_id ?? null;
  }
  if (!assetId)
    throw new Error('the variant has no image: neither jobs_variants.img_asset_id nor job_inputs.img_asset_id is set');
  const a = await ctx.pool.query<{ image_url: string | null; tenant_id: string | null }>(
    'SELECT image_url, tenant_id FROM image_assets WHERE image_asset_id = $1',
    [assetId],
  );
  const url = a.rows[0]?.image_url;
  if (!a.rows[0]) throw new Error(`image asset ${assetId} does not exist`);
  // Checked before the start too (422 asset_tenant_mismatch, docs/stage-api.md); this guards a change meanwhile.
  const owner = a.rows[0].tenant_id;
  if (owner !== null && owner !== run.tenantId) throw new Error(`image asset ${assetId} belongs to another tenant`);
  if (!url) throw new Error(`image asset ${assetId} has no image_url`);
  return await ctx.storage.readRef(url, { ...ctx.config.imageFetch, maxBytes: ctx.config.maxImageBytes });
}

async function requireOverlay(ctx: StageContext, run: StageRun): Promise<{ overlay: OverlayRow; png: Buffer }> {
  const overlay = await latestOverlay(ctx.pool, variantOf(run).job_variants_id);
  if (!overlay) throw new Error('no overlay stored for this variant: run overlay first');
  const png = await ctx.storage.read(overlay.image_key);
  return { overlay, png };
}

async function requireDetections(ctx: StageContext, run: StageRun): Promise<Detection[]> {
  const d = await latestDetections(ctx.pool, variantOf(run).job_variants_id);
  if (!d) throw new Error('no detections stored for this variant: run yolo_detect first');
  return d.detections;
}

interface StoredImage {
  key: string;
  sha256: string;
  mime: string;
  width: number;
  height: number;
  bytes: number;
}

const FORMATS: Record<string, { ext: string; mime: string }> = {
  png: { ext: 'png', mime: 'image/png' },
  jpeg: { ext: 'jpg', mime: 'image/jpeg' },
  webp: { ext: 'webp', mime: 'image/webp' },
};

/** Stores an encoded image under its real format's extension and MIME type. */
async function storeImage(ctx: StageContext, bytes: Buffer, prefix: string): Promise<StoredImage> {
  const meta = await sharp(bytes).metadata();
  const format = FORMATS[meta.format ?? ''];
  if (!format) throw new Error(`refusing to store an image of format ${meta.format ?? 'unknown'}`);
  const key = await ctx.storage.put(bytes, { prefix, ext: format.ext });
  return {
    key,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    mime: format.mime,
    width: meta.width ?? 0,
    height: meta.height ?? 0,
    bytes: bytes.length,
  };
}

async function registerAsset(
  db: Queryable,
  run: StageRun,
  img: StoredImage,
  imageType: 'overlay' | 'planner_preview' | 'instagram_feed',
): Promise<string> {
  return await insertAsset(db, {
    imageType,
    key: img.key,
    tenantId: run.tenantId,
    mime: img.mime,
    width: img.width,
    height: img.height,
    byteSize: img.bytes,
    sha256: img.sha256,
    jobId: run.jobId,
    jobVariantsId: run.variant?.job_variants_id ?? null,
  });
}

const j = (v: unknown) => JSON.stringify(v);

/** The creative engine, loaded on first use (keeps onnxruntime, canvas and tesseract out of startup). */
const vision = () => import('../vision/index.js');

function texts(copy: { headline_eng: string; tagline_kor: string | null }): AdTexts {
  return { headline: copy.headline_eng, tagline: copy.tagline_kor ?? undefined };
}

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

const cpuOr = (useModel: boolean, model: 'vlm' | 'yolo') =>
  (useModel ? [model] : ['render']) as Array<'vlm' | 'yolo' | 'render'>;

const vlmAnalyze: StageDefinition = {
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

const yoloDetect: StageDefinition = {
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

const planner: StageDefinition = {
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

const overlay: StageDefinition = {
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

const vlmJudge: StageDefinition = {
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

const ocrEval: StageDefinition = {
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

const readabilityEval: StageDefinition = {
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

const iouEval: StageDefinition = {
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

const adCopyKor: StageDefinition = {
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

const instagramFeed: StageDefinition = {
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

export const STAGES: Readonly<Record<Exclude<Step, 'user_img_input' | 'img_gen'>, StageDefinition>> = {
  vlm_analyze: vlmAnalyze,
  yolo_detect: yoloDetect,
  planner,
  overlay,
  vlm_judge: vlmJudge,
  ocr_eval: ocrEval,
  readability_eval: readabilityEval,
  iou_eval: iouEval,
  ad_copy_gen_kor: adCopyKor,
  instagram_feed_gen: instagramFeed,
};

export type { StageOutput };

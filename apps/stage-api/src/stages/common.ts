/**
 * What the stages share (docs/stage-api.md): the request's signal and
 * deadline for model calls and worker tasks, the variant's source image, the
 * previous stages' overlay and detections, storing an output image and
 * registering it as an image_assets row.
 */
import { createHash } from 'node:crypto';
import type { Queryable } from '@feedlyai/pipeline-core';
import sharp from 'sharp';
import { insertAsset, latestDetections, latestOverlay, type OverlayRow, type VariantRow } from '../db/queries.js';
import type { AdTexts, Detection } from '../vision/types.js';
import type { StageContext, StageRun } from './runner.js';

/** The request's signal and deadline, for model calls. */
export const callOpts = (run: StageRun) => ({ signal: run.signal, deadline: run.deadline });
/** The request's signal, for worker tasks and OCR. */
export const abortable = (run: StageRun) => ({ signal: run.signal });

export function variantOf(run: StageRun): VariantRow {
  if (!run.variant) throw new Error(`${run.step} is a variant-level step`);
  return run.variant;
}

/** The variant's source image bytes (its img_asset_id, else the job input's image). */
export async function loadSourceImage(ctx: StageContext, run: StageRun): Promise<Uint8Array> {
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

export async function requireOverlay(ctx: StageContext, run: StageRun): Promise<{ overlay: OverlayRow; png: Buffer }> {
  const overlay = await latestOverlay(ctx.pool, variantOf(run).job_variants_id);
  if (!overlay) throw new Error('no overlay stored for this variant: run overlay first');
  const png = await ctx.storage.read(overlay.image_key);
  return { overlay, png };
}

export async function requireDetections(ctx: StageContext, run: StageRun): Promise<Detection[]> {
  const d = await latestDetections(ctx.pool, variantOf(run).job_variants_id);
  if (!d) throw new Error('no detections stored for this variant: run yolo_detect first');
  return d.detections;
}

export interface StoredImage {
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
export async function storeImage(ctx: StageContext, bytes: Buffer, prefix: string): Promise<StoredImage> {
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

export async function registerAsset(
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

export const j = (v: unknown) => JSON.stringify(v);

/** The creative engine, loaded on first use (keeps onnxruntime, canvas and tesseract out of startup). */
export const vision = () => import('../vision/index.js');

export function texts(copy: { headline_eng: string; tagline_kor: string | null }): AdTexts {
  return { headline: copy.headline_eng, tagline: copy.tagline_kor ?? undefined };
}

export const cpuOr = (useModel: boolean, model: 'vlm' | 'yolo') =>
  (useModel ? [model] : ['render']) as Array<'vlm' | 'yolo' | 'render'>;

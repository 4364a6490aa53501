/**
 * Reads of the job's context and the previous stages' results. Every query
 * is parameterised; results are the newest row per subject.
 */
import type { Queryable } from '@feedlyai/pipeline-core';
import type {
  CreativeLayout,
  Detection,
  ImageAnalysis,
  IouResult,
  Judgement,
  OcrLineResult,
  PlacementProposal,
  ReadabilityResult,
  TextTreatment,
} from '../vision/types.js';

export interface JobRow {
  job_id: string;
  tenant_id: string;
  current_step: string;
  status: string;
  attempt: number;
  failure_reason: string | null;
}

export async function getJob(db: Queryable, jobId: string): Promise<JobRow | null> {
  const r = await db.query<JobRow>(
    'SELECT job_id, tenant_id, current_step, status, attempt, failure_reason FROM jobs WHERE job_id = $1',
    [jobId],
  );
  return r.rows[0] ?? null;
}

export interface VariantRow {
  job_variants_id: string;
  job_id: string;
  creation_order: number;
  img_asset_id: string | null;
  current_step: string;
  status: string;
  attempt: number;
}

const VARIANT_COLS = 'job_variants_id, job_id, creation_order, img_asset_id, current_step, status, attempt';

export async function getVariant(db: Queryable, jobId: string, variantId: string): Promise<VariantRow | null> {
  const r = await db.query<VariantRow>(
    `SELECT ${VARIANT_COLS} FROM jobs_variants WHERE job_variants_id = $1 AND job_id = $2`,
    [variantId, jobId],
  );
  return r.rows[0] ?? null;
}

export async function listVariants(db: Queryable, jobId: string): Promise<VariantRow[]> {
  const r = await db.query<VariantRow>(
    `SELECT ${VARIANT_COLS} FROM jobs_variants WHERE job_id = $1 ORDER BY creation_order, job_variants_id`,
    [jobId],
  );
  return r.rows;
}

export interface JobInputs {
  descKor: string | null;
  productName: string | null;
  adCopyEng: string | null;
  taglineKor: string | null;
  imgAssetId: string | null;
  tone: { code: string | null; name: string | null; nameKor: string | null; description: string | null };
}

export async function getJobInputs(db: Queryable, jobId: string): Promise<JobInputs | null> {
  const r = await db.query<{
    desc_kor: string | null;
    product_name: string | null;
    ad_copy_eng: string | null;
    tagline_kor: string | null;
    img_asset_id: string | null;
    code: string | null;
    name: string | null;
    name_kor: string | null;
    description: string | null;
  }>(
    `SELECT i.desc_kor, i.product_name, i.ad_copy_eng, i.tagline_kor, i.img_asset_id,
            t.code, t.name, t.name_kor, t.description
       FROM job_inputs i LEFT JOIN tone_styles t ON t.tone_style_id = i.tone_style_id
      WHERE i.job_id = $1
      ORDER BY i.created_at DESC LIMIT 1`,
    [jobId],
  );
  const row = r.rows[0];
  if (!row) return null;
  const clean = (s: string | null) => (s && s.trim() !== '' ? s.trim() : null);
  return {
    descKor: clean(row.desc_kor),
    productName: clean(row.product_name),
    adCopyEng: clean(row.ad_copy_eng),
    taglineKor: clean(row.tagline_kor),
    imgAssetId: row.img_asset_id,
    tone: { code: row.code, name: row.name, nameKor: row.name_kor, description: row.description },
  };
}

export interface AssetRow {
  image_asset_id: string;
  image_type: string;
  image_url: string | null;
  tenant_id: string | null;
  mime_type: string | null;
}

export async function getAsset(db: Queryable, assetId: string): Promise<AssetRow | null> {
  const r = await db.query<AssetRow>(
    'SELECT image_asset_id, image_type, image_url, tenant_id, mime_type FROM image_assets WHERE image_asset_id = $1',
    [assetId],
  );
  return r.rows[0] ?? null;
}

export async function insertAsset(
  db: Queryable,
  a: {
    imageType: string;
    key: string;
    tenantId: string;
    mime: string;
    width: number;
    height: number;
    byteSize: number;
    sha256: string;
    jobId: string;
    jobVariantsId: string | null;
  },
): Promise<string> {
  const r = await db.query<{ image_asset_id: string }>(
    `INSERT INTO image_assets (image_type, image_url, tenant_id, mime_type, width, height, byte_size, sha256, job_id, job_variants_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING image_asset_id`,
    [a.imageType, a.key, a.tenantId, a.mime, a.width, a.height, a.byteSize, a.sha256, a.jobId, a.jobVariantsId],
  );
  return (r.rows[0] as { image_asset_id: string }).image_asset_id;
}

export async function latestAnalysis(
  db: Queryable,
  variantId: string,
): Promise<(ImageAnalysis & { method: string }) | null> {
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

export async function latestDetections(
  db: Queryable,
  variantId: string,
): Promise<{ detections: Detection[]; method: string } | null> {
  const r = await db.query<{ detections: Detection[]; method: string }>(
    `SELECT detections, method FROM stage_detections
      WHERE job_variants_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
    [variantId],
  );
  return r.rows[0] ?? null;
}

export async function chosenProposal(db: Queryable, variantId: string): Promise<PlacementProposal | null> {
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

export interface OverlayRow {
  id: string;
  image_key: string;
  image_asset_id: string | null;
  layout: CreativeLayout;
  treatment: TextTreatment;
  headline: string;
  tagline: string | null;
}

export async function latestOverlay(db: Queryable, variantId: string): Promise<OverlayRow | null> {
  const r = await db.query<OverlayRow>(
    `SELECT id::text, image_key, image_asset_id, layout, treatment, headline, tagline FROM stage_overlays
      WHERE job_variants_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
    [variantId],
  );
  return r.rows[0] ?? null;
}

export interface AdCopyRow {
  headline_eng: string;
  eng_method: string;
  eng_model: string | null;
  tagline_kor: string | null;
  ad_copy_kor: string | null;
  kor_method: string | null;
}

export async function getAdCopy(db: Queryable, jobId: string): Promise<AdCopyRow | null> {
  const r = await db.query<AdCopyRow>(
    'SELECT headline_eng, eng_method, eng_model, tagline_kor, ad_copy_kor, kor_method FROM job_ad_copies WHERE job_id = $1',
    [jobId],
  );
  return r.rows[0] ?? null;
}

/** Inserts the job's English copy once; every caller gets the row that won. */
export async function ensureAdCopy(
  db: Queryable,
  jobId: string,
  c: { headline: string; method: string; model: string | null; taglineKor: string | null },
): Promise<AdCopyRow> {
  await db.query(
    `INSERT INTO job_ad_copies (job_id, headline_eng, eng_method, eng_model, tagline_kor)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO NOTHING`,
    [jobId, c.headline, c.method, c.model, c.taglineKor],
  );
  const row = await getAdCopy(db, jobId);
  if (!row) throw new Error(`job_ad_copies row for job ${jobId} vanished`);
  return row;
}

/** Everything the feed step scores, per variant (newest rows). */
export interface VariantEvals {
  job_variants_id: string;
  creation_order: number;
  overlay: OverlayRow | null;
  judge: (Judgement & { method: string }) | null;
  ocr: OcrLineResult[];
  readability: ReadabilityResult | null;
  iou: IouResult | null;
}

export async function variantEvals(db: Queryable, v: VariantRow): Promise<VariantEvals> {
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

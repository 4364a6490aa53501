/**
 * Reads of the job's context and of the previous stages' results that more
 * than one stage or route needs (a read only one stage needs sits in that
 * stage's file, stages/*.ts). Every query is parameterised; results are the
 * newest row per subject.
 */
import { INPUT_CAPS, type Queryable } from '@feedlyai/pipeline-core';
import type { CreativeLayout, Detection, TextTreatment } from '../vision/types.js';

export interface JobRow {
  job_id: string;
  tenant_id: string;
  current_step: string;
  status: string;
  attempt: number;
  failure_reason: string | null;
}

/**
 * Input caps in characters (docs/stage-api.md, "Input caps"): `tenant_id` of
 * the job, the other four of its newest `job_inputs` row. A job over a cap is
 * refused with 422 before any step starts. pipeline-core's INPUT_CAPS, the
 * seeders' caps too.
 */
export { INPUT_CAPS };
export type CappedField = keyof typeof INPUT_CAPS;

/** The job row with what the stage checks before a start: the input caps and the input image's tenant. */
export interface JobForStage extends JobRow {
  /** The first field over its cap with its length, or null. */
  tooLong: { field: CappedField; length: number; cap: number } | null;
  /** job_inputs.img_asset_id of the newest inputs row (null: none). */
  input_asset_id: string | null;
  /** image_assets.tenant_id of that asset (null: the existing API server's rows carry none). */
  input_asset_tenant: string | null;
}

/**
 * One query: the job, the character lengths of its capped inputs (char_length
 * counts characters, not bytes) and its input image's tenant.
 */
export async function getJobForStage(db: Queryable, jobId: string): Promise<JobForStage | null> {
  const r = await db.query<
    JobRow &
      Record<`${CappedField}_len`, number | null> & { input_asset_id: string | null; input_asset_tenant: string | null }
  >(
    `SELECT j.job_id, j.tenant_id, j.current_step, j.status, j.attempt, j.failure_reason,
            char_length(j.tenant_id) AS tenant_id_len,
            char_length(i.product_name) AS product_name_len,
            char_length(i.tagline_kor) AS tagline_kor_len,
            char_length(i.ad_copy_eng) AS ad_copy_eng_len,
            char_length(i.desc_kor) AS desc_kor_len,
            i.img_asset_id AS input_asset_id,
            a.tenant_id AS input_asset_tenant
       FROM jobs j
       LEFT JOIN LATERAL (
         SELECT product_name, tagline_kor, ad_copy_eng, desc_kor, img_asset_id FROM job_inputs
          WHERE job_id = j.job_id ORDER BY created_at DESC LIMIT 1
       ) i ON true
       LEFT JOIN image_assets a ON a.image_asset_id = i.img_asset_id
      WHERE j.job_id = $1`,
    [jobId],
  );
  const row = r.rows[0];
  if (!row) return null;
  let tooLong: JobForStage['tooLong'] = null;
  for (const field of Object.keys(INPUT_CAPS) as CappedField[]) {
    const length = row[`${field}_len`] ?? 0;
    if (length > INPUT_CAPS[field]) {
      tooLong = { field, length, cap: INPUT_CAPS[field] };
      break;
    }
  }
  return {
    job_id: row.job_id,
    tenant_id: row.tenant_id,
    current_step: row.current_step,
    status: row.status,
    attempt: row.attempt,
    failure_reason: row.failure_reason,
    tooLong,
    input_asset_id: row.input_asset_id,
    input_asset_tenant: row.input_asset_tenant,
  };
}

export interface VariantRow {
  job_variants_id: string;
  job_id: string;
  creation_order: number;
  img_asset_id: string | null;
  current_step: string;
  status: string;
  attempt: number;
  /** image_assets.tenant_id of img_asset_id (null: no asset, or an asset without a tenant). */
  asset_tenant: string | null;
}

const VARIANT_COLS = `v.job_variants_id, v.job_id, v.creation_order, v.img_asset_id, v.current_step, v.status, v.attempt,
  a.tenant_id AS asset_tenant`;
const VARIANT_FROM = 'jobs_variants v LEFT JOIN image_assets a ON a.image_asset_id = v.img_asset_id';

export async function getVariant(db: Queryable, jobId: string, variantId: string): Promise<VariantRow | null> {
  const r = await db.query<VariantRow>(
    `SELECT ${VARIANT_COLS} FROM ${VARIANT_FROM} WHERE v.job_variants_id = $1 AND v.job_id = $2`,
    [variantId, jobId],
  );
  return r.rows[0] ?? null;
}

export async function listVariants(db: Queryable, jobId: string): Promise<VariantRow[]> {
  const r = await db.query<VariantRow>(
    `SELECT ${VARIANT_COLS} FROM ${VARIANT_FROM} WHERE v.job_id = $1 ORDER BY v.creation_order, v.job_variants_id`,
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

/**
 * Seeding helpers for tests and tools: plain SQL against the seed's tables.
 */
import type pg from 'pg';

type Db = Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>;

export interface SeedJobOptions {
  tenantId?: string;
  variants?: number;
  /** State of each variant after seeding (default img_gen / queued). */
  variantStep?: string;
  variantStatus?: string;
  /** State of the job (default img_gen / queued). */
  jobStep?: string;
  jobStatus?: string;
  /** Image asset key (relative to STORAGE_DIR) or URL; an image_assets row is created when given. */
  imageUrl?: string;
  imageType?: string;
  descKor?: string | null;
  toneCode?: string | null;
  adCopyEng?: string | null;
  taglineKor?: string | null;
  productName?: string | null;
  /** Backdate updated_at of the job and variants (recovery-window tests). */
  updatedAt?: Date;
}

export interface SeededJob {
  jobId: string;
  tenantId: string;
  imageAssetId: string | null;
  variantIds: string[];
}

export async function seedJob(db: Db, o: SeedJobOptions = {}): Promise<SeededJob> {
  const tenantId = o.tenantId ?? 'pipeline_test_tenant_v2';
  const n = o.variants ?? 3;
  const job = await db.query<{ job_id: string }>(
    `INSERT INTO jobs (tenant_id, current_step, status) VALUES ($1, $2, $3) RETURNING job_id`,
    [tenantId, o.jobStep ?? 'img_gen', o.jobStatus ?? 'queued'],
  );
  const jobId = (job.rows[0] as { job_id: string }).job_id;
  let imageAssetId: string | null = null;
  if (o.imageUrl) {
    const a = await db.query<{ image_asset_id: string }>(
      `INSERT INTO image_assets (image_type, image_url, tenant_id) VALUES ($1, $2, $3) RETURNING image_asset_id`,
      [o.imageType ?? 'product', o.imageUrl, tenantId],
    );
    imageAssetId = (a.rows[0] as { image_asset_id: string }).image_asset_id;
  }
  await db.query(
    `INSERT INTO job_inputs (job_id, img_asset_id, desc_kor, tone_style_id, ad_copy_eng, tagline_kor, product_name)
     VALUES ($1, $2, $3, (SELECT tone_style_id FROM tone_styles WHERE code = $4), $5, $6, $7)`,
    [
      jobId,
      imageAssetId,
      o.descKor === undefined ? '부드러운 산미와 고소한 향이 어우러진 핸드드립 커피' : o.descKor,
      o.toneCode === undefined ? 'friendly' : o.toneCode,
      o.adCopyEng ?? null,
      o.taglineKor ?? null,
      o.productName ?? null,
    ],
  );
  const v = await db.query<{ job_variants_id: string }>(
    `INSERT INTO jobs_variants (job_id, img_asset_id, creation_order, current_step, status)
     SELECT $1, $2, g, $3, $4 FROM generate_series(1, $5::int) g
     RETURNING job_variants_id`,
    [jobId, imageAssetId, o.variantStep ?? 'img_gen', o.variantStatus ?? 'queued', n],
  );
  const variantIds = v.rows.map((r) => r.job_variants_id);
  if (o.updatedAt) {
    // The touch trigger only stamps updated_at when the state changes, so a plain UPDATE backdates.
    await db.query('UPDATE jobs SET updated_at = $2 WHERE job_id = $1', [jobId, o.updatedAt]);
    await db.query('UPDATE jobs_variants SET updated_at = $2 WHERE job_id = $1', [jobId, o.updatedAt]);
  }
  return { jobId, tenantId, imageAssetId, variantIds };
}

/** Marks variants (img_gen, done) the way the YE part does: one UPDATE per variant, each its own notification. */
export async function markImgGenDone(db: Db, variantIds: readonly string[]): Promise<void> {
  for (const id of variantIds) {
    await db.query(`UPDATE jobs_variants SET current_step = 'img_gen', status = 'done' WHERE job_variants_id = $1`, [
      id,
    ]);
  }
}

export interface RowStateSnapshot {
  current_step: string;
  status: string;
  attempt: number;
}

export async function variantState(db: Db, id: string): Promise<RowStateSnapshot & { last_error: string | null }> {
  const r = await db.query(
    'SELECT current_step, status, attempt, last_error FROM jobs_variants WHERE job_variants_id = $1',
    [id],
  );
  if (!r.rows[0]) throw new Error(`variant ${id} not found`);
  return r.rows[0];
}

export async function jobState(
  db: Db,
  id: string,
): Promise<RowStateSnapshot & { failure_reason: string | null; last_error: string | null }> {
  const r = await db.query(
    'SELECT current_step, status, attempt, failure_reason, last_error FROM jobs WHERE job_id = $1',
    [id],
  );
  if (!r.rows[0]) throw new Error(`job ${id} not found`);
  return r.rows[0];
}

/**
 * Three variants for every job already in the table, in the states the jobs
 * page's filters must handle at scale: a failed job's variants failed at
 * planner; a running job's (at img_gen) spread over four unfinished steps;
 * otherwise at (iou_eval,'done'), except one job in 500 whose third variant
 * gave up at planner. The dashboard's query-plan test (100,000 jobs) and its
 * benchmark (1,000,000 jobs) seed the same distribution with this.
 */
export async function seedBulkVariants(db: Db): Promise<void> {
  await db.query(
    `INSERT INTO jobs_variants (job_id, creation_order, current_step, status, given_up_at)
     SELECT j.job_id, n,
            CASE WHEN j.failure_reason IS NOT NULL THEN 'planner'
                 WHEN j.current_step = 'img_gen'
                   THEN (ARRAY['vlm_analyze','planner','overlay','ocr_eval'])[1 + (n + abs(hashtext(j.job_id::text))) % 4]
                 WHEN n = 3 AND abs(hashtext(j.job_id::text)) % 500 = 0 THEN 'planner'
                 ELSE 'iou_eval' END,
            CASE WHEN j.failure_reason IS NOT NULL THEN 'failed' WHEN j.current_step = 'img_gen' THEN 'running'
                 WHEN n = 3 AND abs(hashtext(j.job_id::text)) % 500 = 0 THEN 'failed' ELSE 'done' END,
            CASE WHEN j.failure_reason IS NOT NULL OR (n = 3 AND abs(hashtext(j.job_id::text)) % 500 = 0
                                                        AND j.current_step <> 'img_gen') THEN now() END
       FROM jobs j CROSS JOIN generate_series(1, 3) n`,
  );
}

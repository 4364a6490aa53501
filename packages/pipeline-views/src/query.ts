/**
 * The reads behind the views: one statement per table for a set of jobs,
 * never one per variant. Rows are returned as the database gives them; the
 * model (model.ts) turns them into views.
 *
 * The tables are the engine's (pipeline-core's migration set) and the stage
 * server's (apps/stage-api's set): both sets must be applied
 * (docs/migrations.md). A missing table is PostgreSQL's error 42P01, left to
 * the caller (the CLI says "database not migrated").
 */
import type pg from 'pg';

/** A pool, a client, or anything with pg's `query`. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>;

export type Row = Record<string, unknown>;

/** How to pick jobs: by id (in the order given), or a tenant's newest first. */
export type JobSelection = { jobIds: readonly string[] } | { tenantId: string; limit?: number };

/** The stage server's result tables, per variant, newest run first (apps/stage-api's migration set). */
export const VARIANT_RESULT_TABLES = [
  'stage_vlm_analyses',
  'stage_detections',
  'stage_planner_proposals',
  'stage_overlays',
  'stage_vlm_judgements',
  'stage_ocr_evals',
  'stage_readability_evals',
  'stage_iou_evals',
] as const;
export type VariantResultTable = (typeof VARIANT_RESULT_TABLES)[number];

export interface JobRows {
  /** The database's clock. */
  now: Date;
  jobs: Row[];
  variants: Row[];
  inputs: Row[];
  runs: Row[];
  /** Per result table: the rows of the newest run of each variant. */
  results: Record<VariantResultTable, Row[]>;
  adCopies: Row[];
  feeds: Row[];
  stageTimings: Row[];
}

/** The default page size of a tenant selection. */
export const DEFAULT_TENANT_LIMIT = 5;

async function selectJobs(db: Queryable, selection: JobSelection): Promise<Row[]> {
  if ('jobIds' in selection) {
    if (selection.jobIds.length === 0) return [];
    const r = await db.query(
      `SELECT j.* FROM unnest($1::uuid[]) WITH ORDINALITY AS s(job_id, n) JOIN jobs j USING (job_id) ORDER BY s.n`,
      [selection.jobIds],
    );
    return r.rows;
  }
  const r = await db.query('SELECT * FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC, job_id LIMIT $2', [
    selection.tenantId,
    selection.limit ?? DEFAULT_TENANT_LIMIT,
  ]);
  return r.rows;
}

/** Rows of the newest run per variant (the rows of one run share created_at: they are one transaction). */
async function newestRuns(db: Queryable, table: VariantResultTable, jobIds: string[]): Promise<Row[]> {
  // The table name comes from the constant list above, never from input.
  const r = await db.query(
    `SELECT t.* FROM ${table} t
      WHERE t.job_id = ANY($1::uuid[])
        AND t.created_at = (SELECT max(created_at) FROM ${table} u WHERE u.job_variants_id = t.job_variants_id)
      ORDER BY t.job_variants_id, t.id`,
    [jobIds],
  );
  return r.rows;
}

/** Everything the views of the selected jobs need, in a fixed number of statements. */
export async function readJobRows(db: Queryable, selection: JobSelection): Promise<JobRows> {
  const now = (await db.query<{ now: Date }>('SELECT now() AS now')).rows[0]?.now ?? new Date();
  const jobs = await selectJobs(db, selection);
  const empty = Object.fromEntries(VARIANT_RESULT_TABLES.map((t) => [t, [] as Row[]])) as Record<
    VariantResultTable,
    Row[]
  >;
  const rows: JobRows = {
    now: new Date(now),
    jobs,
    variants: [],
    inputs: [],
    runs: [],
    results: empty,
    adCopies: [],
    feeds: [],
    stageTimings: [],
  };
  if (jobs.length === 0) return rows;
  const ids = jobs.map((j) => String(j.job_id));

  rows.variants = (
    await db.query(
      'SELECT * FROM jobs_variants WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, creation_order, job_variants_id',
      [ids],
    )
  ).rows;
  rows.inputs = (
    await db.query(
      `SELECT DISTINCT ON (i.job_id) i.*, t.code AS tone_code, a.image_url
         FROM job_inputs i LEFT JOIN tone_styles t USING (tone_style_id)
         LEFT JOIN image_assets a ON a.image_asset_id = i.img_asset_id
        WHERE i.job_id = ANY($1::uuid[]) ORDER BY i.job_id, i.created_at DESC`,
      [ids],
    )
  ).rows;
  rows.runs = (
    await db.query(
      `SELECT run_id, job_id, job_variants_id, step, attempt, trigger, state, instance_id,
              claimed_at, sent_at, finished_at, http_status, duration_ms, error
         FROM pipeline_step_runs WHERE job_id = ANY($1::uuid[])
        ORDER BY job_id, claimed_at, run_id`,
      [ids],
    )
  ).rows;
  for (const table of VARIANT_RESULT_TABLES) rows.results[table] = await newestRuns(db, table, ids);
  rows.adCopies = (await db.query('SELECT * FROM job_ad_copies WHERE job_id = ANY($1::uuid[])', [ids])).rows;
  rows.feeds = (
    await db.query(
      `SELECT DISTINCT ON (job_id) * FROM stage_instagram_feeds WHERE job_id = ANY($1::uuid[])
        ORDER BY job_id, created_at DESC, id DESC`,
      [ids],
    )
  ).rows;
  rows.stageTimings = (
    await db.query(
      `SELECT DISTINCT ON (job_id, coalesce(job_variants_id::text, ''), step)
              job_id, job_variants_id, step, attempt, outcome, wait_ms, work_ms, finished_at
         FROM stage_run_timings WHERE job_id = ANY($1::uuid[])
        ORDER BY job_id, coalesce(job_variants_id::text, ''), step, finished_at DESC, id DESC`,
      [ids],
    )
  ).rows;
  return rows;
}

/** The job a variant belongs to, or null when there is no such variant. */
export async function jobOfVariant(db: Queryable, variantId: string): Promise<string | null> {
  const r = await db.query<{ job_id: string }>('SELECT job_id FROM jobs_variants WHERE job_variants_id = $1', [
    variantId,
  ]);
  return r.rows[0]?.job_id ?? null;
}

/**
 * The jobs page query (docs/dashboard.md, "How the jobs page stays fast"):
 * newest first, in keyset pages on (created_at, job_id). The filters are
 * fixed SQL fragments with the values as parameters; each one walks an index
 * of migration 0006 in page order, so the inner SELECT stops after
 * `limit + 1` rows whatever the table's size. The row details (variants,
 * chosen creative, input photo and product name) are looked up for that page
 * only, each through an index on the page's job ids.
 */
import type { Queryable } from '@feedlyai/pipeline-core';
import type { Cursor, JobFilters, JobsQuery } from '../filters.js';
import {
  JOB_STATUS_SQL,
  type JobStatus,
  jobStatusOf,
  progressOf,
  type RowState,
  stepFilterKind,
} from '../vocabulary.js';

export interface JobListRow {
  jobId: string;
  tenantId: string;
  currentStep: string;
  status: string;
  attempt: number;
  failureReason: string | null;
  lastError: string | null;
  createdAt: Date;
  updatedAt: Date;
  completedAt: Date | null;
  /** done / failed / running (vocabulary.ts). */
  jobStatus: JobStatus;
  /** The least advanced variant's step and status (the job's own in the job-level phase). */
  progress: RowState;
  variants: RowState[];
  chosenVariantId: string | null;
  /** The chosen variant's creative (overlay image), once the feed step picked one. */
  chosenAssetId: string | null;
  /** The input photo. */
  inputAssetId: string | null;
  /** The product's name as the job was created with it (job_inputs.product_name), what the job page shows as "Product". */
  productName: string | null;
  /** This row as a cursor: the next page starts after it. */
  cursor: Cursor;
}

export interface JobsPage {
  rows: JobListRow[];
  /** The cursor of the next (older) page, or null when this is the last. */
  next: Cursor | null;
}

type Params = unknown[];

function param(params: Params, value: unknown): string {
  params.push(value);
  return `$${params.length}`;
}

/**
 * Running or failed for good: the complement of done, written as the predicate of the
 * jobs_unfinished_* indexes of migration 0007 so that the planner can use them.
 */
const UNFINISHED_SQL = `(j.failure_reason IS NOT NULL OR NOT (j.current_step = 'instagram_feed_gen' AND j.status = 'done'))`;

/**
 * The filters as WHERE clauses over `jobs j` (fixed text; the values go to
 * `params`). A variant step before iou_eval matches the unfinished jobs
 * (running, or failed for good) with a variant there: a done job is past
 * every step, even when fan-in policy `any` left a given-up variant behind
 * (docs/dashboard.md). They are walked in page order through the
 * jobs_unfinished_* indexes of migration 0007 (a few percent of the table),
 * each checked through jobs_variants_active_step_idx.
 */
export function filterClauses(f: JobFilters, params: Params): string[] {
  const where: string[] = [];
  if (f.tenant !== null) where.push(`j.tenant_id = ${param(params, f.tenant)}`);
  if (f.from !== null) where.push(`j.created_at >= ${param(params, f.from)}`);
  if (f.to !== null) where.push(`j.created_at < ${param(params, f.to)}`);
  if (f.status !== null) where.push(JOB_STATUS_SQL[f.status]);
  if (f.step === null) return where;
  if (stepFilterKind(f.step) === 'job') {
    where.push(`j.current_step = ${param(params, f.step)}`);
  } else if (f.step === 'iou_eval') {
    // Finished variants are at ('iou_eval','done'): most jobs match, found walking jobs_created_idx.
    where.push(`EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id AND v.current_step = 'iou_eval')`);
  } else {
    if (f.status === null) where.push(UNFINISHED_SQL);
    // The predicate of jobs_variants_active_step_idx, written out so that the planner can use it.
    where.push(
      `EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id AND v.current_step = ${param(params, f.step)}
                 AND NOT (v.current_step = 'iou_eval' AND v.status = 'done'))`,
    );
    if (f.status === 'done') where.push('false');
  }
  return where;
}

/**
 * The inner keyset SELECT of a page: the ids and sort keys of at most
 * `limit + 1` jobs, newest first. Exported for the query-plan test.
 */
export function pageIdsSql(q: JobsQuery, params: Params): string {
  const where = filterClauses(q, params);
  if (q.cursor !== null) {
    where.push(
      `(j.created_at, j.job_id) < (${param(params, q.cursor.createdAt)}::timestamptz, ${param(params, q.cursor.jobId)}::uuid)`,
    );
  }
  return `SELECT j.job_id, j.created_at FROM jobs j
   ${where.length ? `WHERE ${where.join('\n     AND ')}` : ''}
   ORDER BY j.created_at DESC, j.job_id DESC
   LIMIT ${param(params, q.limit + 1)}`;
}

/**
 * The details of the jobs whose ids the inner SELECT `ids` returns, newest
 * first. Without the stage server's tables (`stage: false`) there is no
 * chosen creative to show.
 */
function detailsSql(ids: string, stage: boolean): string {
  const chosen = stage
    ? `LEFT JOIN LATERAL (
      SELECT f.chosen_variant_id FROM stage_instagram_feeds f
       WHERE f.job_id = j.job_id ORDER BY f.created_at DESC, f.id DESC LIMIT 1
    ) f ON true
    LEFT JOIN LATERAL (
      SELECT o.image_asset_id FROM stage_overlays o
       WHERE o.job_variants_id = f.chosen_variant_id ORDER BY o.created_at DESC, o.id DESC LIMIT 1
    ) o ON true`
    : 'CROSS JOIN (SELECT NULL::uuid AS chosen_variant_id) f CROSS JOIN (SELECT NULL::uuid AS image_asset_id) o';
  return `SELECT j.job_id::text AS job_id, j.tenant_id, j.current_step, j.status, j.attempt, j.failure_reason,
         j.last_error, j.created_at, j.updated_at, j.completed_at,
         to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at,
         coalesce(v.variants, '[]'::json) AS variants,
         f.chosen_variant_id::text AS chosen_variant_id,
         o.image_asset_id::text AS chosen_asset_id,
         i.img_asset_id::text AS input_asset_id,
         i.product_name
    FROM (${ids}) p
    JOIN jobs j ON j.job_id = p.job_id
    LEFT JOIN LATERAL (
      SELECT json_agg(json_build_object('current_step', v.current_step, 'status', v.status)
                      ORDER BY v.creation_order, v.job_variants_id) AS variants
        FROM jobs_variants v WHERE v.job_id = j.job_id
    ) v ON true
    ${chosen}
    LEFT JOIN LATERAL (
      SELECT i.img_asset_id, i.product_name FROM job_inputs i WHERE i.job_id = j.job_id ORDER BY i.created_at DESC LIMIT 1
    ) i ON true
   ORDER BY j.created_at DESC, j.job_id DESC`;
}

interface DetailRow {
  job_id: string;
  tenant_id: string;
  current_step: string;
  status: string;
  attempt: number;
  failure_reason: string | null;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
  completed_at: Date | null;
  cursor_at: string;
  variants: RowState[];
  chosen_variant_id: string | null;
  chosen_asset_id: string | null;
  input_asset_id: string | null;
  product_name: string | null;
}

function toRow(r: DetailRow): JobListRow {
  const job = { current_step: r.current_step, status: r.status };
  return {
    jobId: r.job_id,
    tenantId: r.tenant_id,
    currentStep: r.current_step,
    status: r.status,
    attempt: r.attempt,
    failureReason: r.failure_reason,
    lastError: r.last_error,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    completedAt: r.completed_at,
    jobStatus: jobStatusOf(r),
    progress: progressOf(job, r.variants),
    variants: r.variants,
    chosenVariantId: r.chosen_variant_id,
    chosenAssetId: r.chosen_asset_id,
    inputAssetId: r.input_asset_id,
    productName: r.product_name,
    cursor: { createdAt: r.cursor_at, jobId: r.job_id },
  };
}

/** What listJobs needs of a pool: a client for its transaction (pg.Pool). */
export interface PagePool {
  connect(): Promise<{
    query: Queryable['query'];
    release(destroy?: boolean | Error): void;
  }>;
}

/**
 * Reads one page. In a transaction of its own with parallel query off: a page
 * stops after `limit + 1` rows of an index walk, and starting parallel workers
 * for it costs more than the walk (10 to 100 ms on a busy machine, against
 * well under a millisecond); and a statement timeout, so that no page can hold
 * a connection for long.
 */
export async function listJobs(pool: PagePool, q: JobsQuery, stage = true): Promise<JobsPage> {
  const params: Params = [];
  const sql = detailsSql(pageIdsSql(q, params), stage);
  const client = await pool.connect();
  let rows: DetailRow[];
  try {
    await client.query('BEGIN READ ONLY');
    await client.query('SET LOCAL max_parallel_workers_per_gather = 0');
    await client.query(`SET LOCAL statement_timeout = '10s'`);
    rows = (await client.query<DetailRow>(sql, params)).rows;
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    client.release(true);
    throw err;
  }
  client.release();
  const page = rows.slice(0, q.limit).map(toRow);
  const last = page[page.length - 1];
  return { rows: page, next: rows.length > q.limit && last ? last.cursor : null };
}

/** One job as a row of the jobs page (the live updates redraw it), or null. */
export async function jobListRow(db: Queryable, jobId: string, stage = true): Promise<JobListRow | null> {
  const { rows } = await db.query<DetailRow>(detailsSql('SELECT $1::uuid AS job_id', stage), [jobId]);
  return rows[0] ? toRow(rows[0]) : null;
}

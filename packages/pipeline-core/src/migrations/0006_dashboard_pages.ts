/**
 * 0006: the indexes of the dashboard's pages (packages/dashboard,
 * docs/dashboard.md, "How the jobs page stays fast").
 *
 * The jobs page lists jobs newest first in keyset pages on
 * (created_at, job_id): every filter it offers walks one of these indexes in
 * that order and stops after a page, so a page costs the same at a thousand
 * jobs and at a million.
 *
 * - no filter, a time range, status done: jobs_created_idx;
 * - a tenant: jobs_tenant_created_job_idx (jobs_tenant_created_idx of 0001
 *   has no job_id to break ties in keyset order);
 * - status failed / running: partial indexes holding only those jobs (few at
 *   any time), with and without a tenant;
 * - a job-level step: jobs_job_step_created_idx;
 * - a variant step: the variants that are not finished, by step
 *   (jobs_variants_active_step_idx); finished variants are at
 *   ('iou_eval','done') and their jobs are found through jobs_created_idx.
 *
 * Throughput (steps and failures per minute for the last hour) reads the run
 * log by finished_at through a BRIN index: a few pages on disk, and since
 * PostgreSQL 16 setting finished_at (a summarizing index's column) keeps the
 * run log's updates HOT.
 *
 * Plain CREATE INDEX (a migration is one transaction, and CONCURRENTLY cannot
 * run in one): writes to the table wait while an index is built, about a
 * second per million rows. Additive and idempotent, like the others.
 */
export const name = 'dashboard_pages';

export const sql = /* sql */ `
CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_tenant_created_job_idx ON jobs (tenant_id, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_failed_created_idx ON jobs (created_at, job_id)
  WHERE failure_reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_failed_tenant_created_idx ON jobs (tenant_id, created_at, job_id)
  WHERE failure_reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_running_created_idx ON jobs (created_at, job_id)
  WHERE failure_reason IS NULL AND NOT (current_step = 'instagram_feed_gen' AND status = 'done');
CREATE INDEX IF NOT EXISTS jobs_running_tenant_created_idx ON jobs (tenant_id, created_at, job_id)
  WHERE failure_reason IS NULL AND NOT (current_step = 'instagram_feed_gen' AND status = 'done');
CREATE INDEX IF NOT EXISTS jobs_job_step_created_idx ON jobs (current_step, created_at, job_id)
  WHERE current_step IN ('ad_copy_gen_kor', 'instagram_feed_gen');
CREATE INDEX IF NOT EXISTS jobs_variants_active_step_idx ON jobs_variants (current_step, job_id)
  WHERE NOT (current_step = 'iou_eval' AND status = 'done');
CREATE INDEX IF NOT EXISTS pipeline_step_runs_finished_brin ON pipeline_step_runs
  USING brin (finished_at) WITH (autosummarize = on);
`;

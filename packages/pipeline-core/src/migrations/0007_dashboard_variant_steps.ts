/**
 * 0007: the dashboard's variant-step filter at any size (docs/dashboard.md,
 * "How the jobs page stays fast"). It matches the unfinished jobs (running,
 * or failed for good: a few percent of the table) with a variant at the step:
 * the jobs page walks these indexes in page order and checks each job for
 * such a variant. With 0006 alone it walked every job, which at 1,000,000
 * jobs meant thousands of checks for a page.
 *
 * Additive and idempotent, like the others.
 */
export const name = 'dashboard_variant_steps';

export const sql = /* sql */ `
CREATE INDEX IF NOT EXISTS jobs_unfinished_created_idx ON jobs (created_at, job_id)
  WHERE failure_reason IS NOT NULL OR NOT (current_step = 'instagram_feed_gen' AND status = 'done');
CREATE INDEX IF NOT EXISTS jobs_unfinished_tenant_created_idx ON jobs (tenant_id, created_at, job_id)
  WHERE failure_reason IS NOT NULL OR NOT (current_step = 'instagram_feed_gen' AND status = 'done');
`;

/**
 * 0008: extended statistics on the state columns (docs/migrations.md). The
 * planner otherwise treats `current_step` and `status` as independent, so on
 * a table of finished jobs it expects a few percent of them to match "at a
 * job-level step and not (instagram_feed_gen, done)" when none do, and
 * prefers a bitmap scan over the dashboard's indexes plus a sort to the
 * recovery scan's own tiny partial index (jobs_job_phase_recovery_idx). The
 * MCV lists of the pairs give it the real combined frequencies.
 *
 * Additive and idempotent; ANALYZE (or autovacuum) fills them.
 */
export const name = 'step_status_statistics';

export const sql = /* sql */ `
CREATE STATISTICS IF NOT EXISTS jobs_step_status_stats (mcv, dependencies) ON current_step, status FROM jobs;
CREATE STATISTICS IF NOT EXISTS jobs_variants_step_status_stats (mcv, dependencies) ON current_step, status FROM jobs_variants;
ANALYZE jobs (current_step, status);
ANALYZE jobs_variants (current_step, status);
`;

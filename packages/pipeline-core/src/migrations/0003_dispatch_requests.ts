/**
 * 0003: manual retry hand-off. `retryJob` re-queues a failed step as a new
 * attempt and stamps `dispatch_requested_at`; the listener's recovery claims
 * that request with a guarded UPDATE that clears it (exactly one instance
 * dispatches it), since a `queued` row by itself is not a claim to dispatch.
 */
export const name = 'dispatch_requests';

export const sql = /* sql */ `
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS dispatch_requested_at timestamptz;
ALTER TABLE jobs_variants ADD COLUMN IF NOT EXISTS dispatch_requested_at timestamptz;
CREATE INDEX IF NOT EXISTS jobs_dispatch_requested_idx ON jobs (dispatch_requested_at)
  WHERE dispatch_requested_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_variants_dispatch_requested_idx ON jobs_variants (dispatch_requested_at)
  WHERE dispatch_requested_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS pipeline_step_runs_variant_idx ON pipeline_step_runs (job_variants_id, claimed_at)
  WHERE job_variants_id IS NOT NULL;
`;

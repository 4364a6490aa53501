/**
 * Manual cancel (docs/state-machine.md, "operator: cancel"): status 'failed', reason
 * 'cancelled'. Every claim, retry and rescue guard checks failure_reason, and
 * the stage's start guard too, so nothing further is dispatched.
 */
import type { Queryable } from '../db.js';

export interface CancelResult {
  jobId: string;
  /** False when the job was already finished or failed for good. */
  cancelled: boolean;
  currentStep: string;
  status: string;
  failureReason: string | null;
}

export async function cancelJob(db: Queryable, jobId: string): Promise<CancelResult> {
  const upd = await db.query<{ current_step: string; status: string; failure_reason: string }>(
    `UPDATE jobs SET status = 'failed', failure_reason = 'cancelled', dispatch_requested_at = NULL
      WHERE job_id = $1 AND failure_reason IS NULL
        AND NOT (current_step = 'instagram_feed_gen' AND status = 'done')
      RETURNING current_step, status, failure_reason`,
    [jobId],
  );
  const row = upd.rows[0];
  if (row) {
    return { jobId, cancelled: true, currentStep: row.current_step, status: row.status, failureReason: 'cancelled' };
  }
  const cur = await db.query<{ current_step: string; status: string; failure_reason: string | null }>(
    'SELECT current_step, status, failure_reason FROM jobs WHERE job_id = $1',
    [jobId],
  );
  const c = cur.rows[0];
  if (!c) throw new Error(`job ${jobId} not found`);
  return {
    jobId,
    cancelled: false,
    currentStep: c.current_step,
    status: c.status,
    failureReason: c.failure_reason,
  };
}

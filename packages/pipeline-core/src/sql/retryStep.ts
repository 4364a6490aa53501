/**
 * Retry (docs/state-machine.md, "retry"): (step,'failed') -> (step,'queued'), attempt + 1,
 * guarded by the attempt the caller read (still failed, not given up, job not
 * failed for good) and by the attempt limit (counted from attempt_base).
 * The caller dispatches the returned attempt; failed -> queued is a
 * notification nobody acts on.
 */
import type { Queryable } from '../db.js';
import type { StepSubject } from './subject.js';
import { type ClaimedStep, type ClaimRow, logClaim, toClaimed } from './types.js';

export interface RetryStepArgs extends StepSubject {
  /** The failed attempt the caller read. */
  attempt: number;
  maxAttempts: number;
  instanceId: string;
}

export async function retryStep(db: Queryable, a: RetryStepArgs): Promise<ClaimedStep | null> {
  if (a.jobVariantsId) {
    const { rows } = await db.query<ClaimRow>(
      `WITH claimed AS (
         UPDATE jobs_variants v
            SET status = 'queued', attempt = v.attempt + 1, dispatch_requested_at = NULL, claimed_by = $6
           FROM jobs j
          WHERE v.job_variants_id = $1 AND j.job_id = v.job_id
            AND v.current_step = $2 AND v.status = 'failed' AND v.attempt = $3
            AND v.given_up_at IS NULL AND v.attempt - v.attempt_base < $4
            AND j.failure_reason IS NULL
          RETURNING v.job_id, j.tenant_id, v.job_variants_id, v.attempt, v.attempt_base
       )${logClaim(2, 5, 6)}`,
      [a.jobVariantsId, a.step, a.attempt, a.maxAttempts, 'retry', a.instanceId],
    );
    return toClaimed(rows[0], a.step, 'retry');
  }
  const { rows } = await db.query<ClaimRow>(
    `WITH claimed AS (
       UPDATE jobs j
          SET status = 'queued', attempt = j.attempt + 1, dispatch_requested_at = NULL, claimed_by = $6
        WHERE j.job_id = $1 AND j.current_step = $2 AND j.status = 'failed' AND j.attempt = $3
          AND j.failure_reason IS NULL AND j.attempt - j.attempt_base < $4
        RETURNING j.job_id, j.tenant_id, NULL::uuid AS job_variants_id, j.attempt, j.attempt_base
     )${logClaim(2, 5, 6)}`,
    [a.jobId, a.step, a.attempt, a.maxAttempts, 'retry', a.instanceId],
  );
  return toClaimed(rows[0], a.step, 'retry');
}

/**
 * A manual retry (`retryJob`) leaves (step,'queued') with a new attempt and
 * `dispatch_requested_at` set. Whoever clears that mark with this guarded
 * UPDATE dispatches the attempt: exactly one instance wins.
 */
import type { Queryable } from '../db.js';
import type { StepSubject } from './subject.js';
import { type ClaimedStep, type ClaimRow, logClaim, toClaimed } from './types.js';

export interface ClaimRequestedArgs extends StepSubject {
  attempt: number;
  instanceId: string;
}

export async function claimRequested(db: Queryable, a: ClaimRequestedArgs): Promise<ClaimedStep | null> {
  if (a.jobVariantsId) {
    const { rows } = await db.query<ClaimRow>(
      `WITH claimed AS (
         UPDATE jobs_variants v SET dispatch_requested_at = NULL
           FROM jobs j
          WHERE v.job_variants_id = $1 AND j.job_id = v.job_id AND v.current_step = $2 AND v.status = 'queued'
            AND v.attempt = $3 AND v.dispatch_requested_at IS NOT NULL AND j.failure_reason IS NULL
          RETURNING v.job_id, j.tenant_id, v.job_variants_id, v.attempt
       )${logClaim(2, 4, 5)}`,
      [a.jobVariantsId, a.step, a.attempt, 'manual', a.instanceId],
    );
    return toClaimed(rows[0], a.step, 'manual');
  }
  const { rows } = await db.query<ClaimRow>(
    `WITH claimed AS (
       UPDATE jobs j SET dispatch_requested_at = NULL
        WHERE j.job_id = $1 AND j.current_step = $2 AND j.status = 'queued' AND j.attempt = $3
          AND j.dispatch_requested_at IS NOT NULL AND j.failure_reason IS NULL
        RETURNING j.job_id, j.tenant_id, NULL::uuid AS job_variants_id, j.attempt
     )${logClaim(2, 4, 5)}`,
    [a.jobId, a.step, a.attempt, 'manual', a.instanceId],
  );
  return toClaimed(rows[0], a.step, 'manual');
}

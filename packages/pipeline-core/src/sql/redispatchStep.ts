/**
 * Re-dispatch (docs/state-machine.md, "re-dispatch"): a `queued` row whose
 * claimer is dead (or that has no claimer) -> the same `(step,'queued')` with
 * attempt + 1 AND attempt_base + 1, so the new attempt does not count against
 * the limit, and claimed_by = the new claimer. Guarded by the attempt and the
 * claimer read: of all the live instances that saw the dead one's row,
 * exactly one gets it back, and a late send of the old attempt is refused by
 * the stage's start guard (it fences on the attempt).
 *
 * A row an operator's retry asked to dispatch (`trigger` 'manual',
 * dispatch_requested_at set by retryJob) keeps its attempt: retryJob made that
 * attempt and nobody sent it yet. The claim clears the request, guarded by it
 * and by the attempt, so exactly one instance sends it.
 */
import type { Queryable } from '../db.js';
import type { StepSubject } from './subject.js';
import { type ClaimedStep, type ClaimRow, logClaim, toClaimed } from './types.js';

export interface RedispatchStepArgs extends StepSubject {
  /** The attempt read. */
  attempt: number;
  /** The claimer read (null: none). */
  claimedBy: string | null;
  instanceId: string;
  /** `manual` for a row an operator's retry asked to dispatch. */
  trigger: 'redispatch' | 'manual';
}

export async function redispatchStep(db: Queryable, a: RedispatchStepArgs): Promise<ClaimedStep | null> {
  if (a.jobVariantsId) {
    const { rows } = await db.query<ClaimRow>(
      `WITH claimed AS (
         UPDATE jobs_variants v
            SET attempt = v.attempt + (CASE WHEN $5::text = 'manual' THEN 0 ELSE 1 END),
                attempt_base = v.attempt_base + (CASE WHEN $5::text = 'manual' THEN 0 ELSE 1 END),
                claimed_by = $6, dispatch_requested_at = NULL
           FROM jobs j
          WHERE v.job_variants_id = $1 AND j.job_id = v.job_id
            AND v.current_step = $2 AND v.status = 'queued' AND v.attempt = $3
            AND (CASE WHEN $5::text = 'manual' THEN v.dispatch_requested_at IS NOT NULL
                      ELSE v.claimed_by IS NOT DISTINCT FROM $4::text END)
            AND j.failure_reason IS NULL
          RETURNING v.job_id, j.tenant_id, v.job_variants_id, v.attempt, v.attempt_base
       )${logClaim(2, 5, 6)}`,
      [a.jobVariantsId, a.step, a.attempt, a.claimedBy, a.trigger, a.instanceId],
    );
    return toClaimed(rows[0], a.step, a.trigger);
  }
  const { rows } = await db.query<ClaimRow>(
    `WITH claimed AS (
       UPDATE jobs j
          SET attempt = j.attempt + (CASE WHEN $5::text = 'manual' THEN 0 ELSE 1 END),
              attempt_base = j.attempt_base + (CASE WHEN $5::text = 'manual' THEN 0 ELSE 1 END),
              claimed_by = $6, dispatch_requested_at = NULL
        WHERE j.job_id = $1 AND j.current_step = $2 AND j.status = 'queued' AND j.attempt = $3
          AND (CASE WHEN $5::text = 'manual' THEN j.dispatch_requested_at IS NOT NULL
                    ELSE j.claimed_by IS NOT DISTINCT FROM $4::text END)
          AND j.failure_reason IS NULL
        RETURNING j.job_id, j.tenant_id, NULL::uuid AS job_variants_id, j.attempt, j.attempt_base
     )${logClaim(2, 5, 6)}`,
    [a.jobId, a.step, a.attempt, a.claimedBy, a.trigger, a.instanceId],
  );
  return toClaimed(rows[0], a.step, a.trigger);
}

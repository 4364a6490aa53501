/**
 * Rescue (docs/state-machine.md, "rescue"): a (step,'running') whose deadline
 * has passed -> (step,'queued'), attempt + 1 (counted), claimed_by = the
 * rescuer, guarded by the attempt read and by updated_at still being older
 * than the step's rescue timeout (the deadline the stage was sent, plus a
 * margin). The new attempt is the fencing token: the stage's finish guard
 * refuses a late finish of the older attempt. `queued` rows are never rescued
 * by a timer (their live claimer re-sends them; a dead claimer's are
 * re-dispatched: redispatchStep).
 *
 * `olderThanMs` 0 is the dispatcher's own rescue: it waited for the deadline
 * plus a grace and got no answer, so the deadline has passed already.
 *
 * At the attempt limit the step is instead marked failed ('timed out: ...')
 * with `timeOutStep`, and the caller gives up.
 */
import type { Queryable } from '../db.js';
import type { StepSubject } from './subject.js';
import { type ClaimedStep, type ClaimRow, logClaim, toClaimed } from './types.js';

export interface RescueStepArgs extends StepSubject {
  attempt: number;
  /** The row must have been `running` for at least this long (its rescue timeout; 0: the caller knows). */
  olderThanMs: number;
  maxAttempts: number;
  instanceId: string;
}

export async function rescueStep(db: Queryable, a: RescueStepArgs): Promise<ClaimedStep | null> {
  if (a.jobVariantsId) {
    const { rows } = await db.query<ClaimRow>(
      `WITH claimed AS (
         UPDATE jobs_variants v
            SET status = 'queued', attempt = v.attempt + 1, dispatch_requested_at = NULL, claimed_by = $7
           FROM jobs j
          WHERE v.job_variants_id = $1 AND j.job_id = v.job_id
            AND v.current_step = $2 AND v.status = 'running' AND v.attempt = $3
            AND v.updated_at <= now() - $4 * interval '1 millisecond'
            AND v.given_up_at IS NULL AND v.attempt - v.attempt_base < $5
            AND j.failure_reason IS NULL
          RETURNING v.job_id, j.tenant_id, v.job_variants_id, v.attempt, v.attempt_base
       )${logClaim(2, 6, 7)}`,
      [a.jobVariantsId, a.step, a.attempt, a.olderThanMs, a.maxAttempts, 'rescue', a.instanceId],
    );
    return toClaimed(rows[0], a.step, 'rescue');
  }
  const { rows } = await db.query<ClaimRow>(
    `WITH claimed AS (
       UPDATE jobs j
          SET status = 'queued', attempt = j.attempt + 1, dispatch_requested_at = NULL, claimed_by = $7
        WHERE j.job_id = $1 AND j.current_step = $2 AND j.status = 'running' AND j.attempt = $3
          AND j.updated_at <= now() - $4 * interval '1 millisecond'
          AND j.failure_reason IS NULL AND j.attempt - j.attempt_base < $5
        RETURNING j.job_id, j.tenant_id, NULL::uuid AS job_variants_id, j.attempt, j.attempt_base
     )${logClaim(2, 6, 7)}`,
    [a.jobId, a.step, a.attempt, a.olderThanMs, a.maxAttempts, 'rescue', a.instanceId],
  );
  return toClaimed(rows[0], a.step, 'rescue');
}

/**
 * A (step,'running') past its deadline at its attempt limit -> (step,'failed')
 * with 'timed out: ...', same guards as the rescue. True when this call did it.
 */
export async function timeOutStep(db: Queryable, a: Omit<RescueStepArgs, 'instanceId'>): Promise<boolean> {
  const error = `timed out: ${a.step} attempt ${a.attempt} got no answer before its deadline`;
  const table = a.jobVariantsId ? 'jobs_variants' : 'jobs';
  const idCol = a.jobVariantsId ? 'job_variants_id' : 'job_id';
  const extra = a.jobVariantsId
    ? 'AND given_up_at IS NULL AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = jobs_variants.job_id AND j.failure_reason IS NULL)'
    : 'AND failure_reason IS NULL';
  const r = await db.query(
    `UPDATE ${table} SET status = 'failed', last_error = $6
      WHERE ${idCol} = $1 AND current_step = $2 AND status = 'running' AND attempt = $3
        AND updated_at <= now() - $4 * interval '1 millisecond'
        AND attempt - attempt_base >= $5 ${extra}`,
    [a.jobVariantsId ?? a.jobId, a.step, a.attempt, a.olderThanMs, a.maxAttempts, error],
  );
  return r.rowCount === 1;
}

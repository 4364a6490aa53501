/**
 * Rescue (CONTRACTS "rescue"): a (step,'queued'|'running') older than the
 * step's rescue timeout -> (step,'queued'), attempt + 1, guarded by the attempt
 * read and by updated_at still being old. The new attempt is the fencing token:
 * the stage's finish guard refuses a late finish of the older attempt.
 * queued -> queued does not NOTIFY, so the caller dispatches the new attempt.
 *
 * At the attempt limit the step is instead marked failed ('timed out: ...')
 * with `timeOutStep`, and the caller gives up.
 */
import type { Queryable } from '../db.js';
import type { StepSubject } from './subject.js';
import { type ClaimedStep, type ClaimRow, logClaim, toClaimed } from './types.js';

export interface RescueStepArgs extends StepSubject {
  attempt: number;
  rescueAfterMs: number;
  maxAttempts: number;
  instanceId: string;
}

export async function rescueStep(db: Queryable, a: RescueStepArgs): Promise<ClaimedStep | null> {
  if (a.jobVariantsId) {
    const { rows } = await db.query<ClaimRow>(
      `WITH claimed AS (
         UPDATE jobs_variants v
            SET status = 'queued', attempt = v.attempt + 1, dispatch_requested_at = NULL
           FROM jobs j
          WHERE v.job_variants_id = $1 AND j.job_id = v.job_id
            AND v.current_step = $2 AND v.status IN ('queued', 'running') AND v.attempt = $3
            AND v.updated_at < now() - $4 * interval '1 millisecond'
            AND v.given_up_at IS NULL AND v.attempt - v.attempt_base < $5
            AND j.failure_reason IS NULL
          RETURNING v.job_id, j.tenant_id, v.job_variants_id, v.attempt
       )${logClaim(2, 6, 7)}`,
      [a.jobVariantsId, a.step, a.attempt, a.rescueAfterMs, a.maxAttempts, 'rescue', a.instanceId],
    );
    return toClaimed(rows[0], a.step, 'rescue');
  }
  const { rows } = await db.query<ClaimRow>(
    `WITH claimed AS (
       UPDATE jobs j
          SET status = 'queued', attempt = j.attempt + 1, dispatch_requested_at = NULL
        WHERE j.job_id = $1 AND j.current_step = $2 AND j.status IN ('queued', 'running') AND j.attempt = $3
          AND j.updated_at < now() - $4 * interval '1 millisecond'
          AND j.failure_reason IS NULL AND j.attempt - j.attempt_base < $5
        RETURNING j.job_id, j.tenant_id, NULL::uuid AS job_variants_id, j.attempt
     )${logClaim(2, 6, 7)}`,
    [a.jobId, a.step, a.attempt, a.rescueAfterMs, a.maxAttempts, 'rescue', a.instanceId],
  );
  return toClaimed(rows[0], a.step, 'rescue');
}

/**
 * A stale (step,'queued'|'running') at its attempt limit -> (step,'failed') with
 * 'timed out: ...', same guards as the rescue. True when this call did it.
 */
export async function timeOutStep(db: Queryable, a: Omit<RescueStepArgs, 'instanceId'>): Promise<boolean> {
  const error = `timed out: ${a.step} attempt ${a.attempt} ran longer than ${a.rescueAfterMs} ms`;
  const table = a.jobVariantsId ? 'jobs_variants' : 'jobs';
  const idCol = a.jobVariantsId ? 'job_variants_id' : 'job_id';
  const extra = a.jobVariantsId
    ? 'AND given_up_at IS NULL AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = jobs_variants.job_id AND j.failure_reason IS NULL)'
    : 'AND failure_reason IS NULL';
  const r = await db.query(
    `UPDATE ${table} SET status = 'failed', last_error = $6
      WHERE ${idCol} = $1 AND current_step = $2 AND status IN ('queued', 'running') AND attempt = $3
        AND updated_at < now() - $4 * interval '1 millisecond'
        AND attempt - attempt_base >= $5 ${extra}`,
    [a.jobVariantsId ?? a.jobId, a.step, a.attempt, a.rescueAfterMs, a.maxAttempts, error],
  );
  return r.rowCount === 1;
}

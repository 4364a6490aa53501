/**
 * Give up (docs/state-machine.md, "give up" and "reject").
 * - A variant (step,'failed') at its attempt limit gets `given_up_at`; with
 *   policy `all` its job fails in the same statement with
 *   '<step> failed after N attempts: <last_error>'. With policy `any` the
 *   caller runs the fan-in check instead.
 * - A job-level (step,'failed') at its limit gets `failure_reason`.
 * - `rejectStep`: the stage answered 400/422 (the job's input is bad, it will
 *   not get better): a step still at our attempt ((step,'queued'), or
 *   (step,'failed') when the stage recorded it) is marked failed with the
 *   error and given up at once, whatever the attempt count.
 */
import type { Queryable } from '../db.js';
import type { FanInPolicy } from './claimFanIn.js';
import type { StepSubject } from './subject.js';

export interface GiveUpArgs extends StepSubject {
  /** The failed attempt the caller read. */
  attempt: number;
  maxAttempts: number;
  policy: FanInPolicy;
}

export interface GaveUp {
  jobId: string;
  attempts: number;
  lastError: string | null;
  /** Set when the job failed for good in the same statement. */
  jobFailureReason: string | null;
}

interface GaveUpRow {
  job_id: string;
  attempts: number;
  last_error: string | null;
  job_failure_reason: string | null;
}

const FAIL_JOB_FROM_G = /* sql */ `
, f AS (
  UPDATE jobs j
     SET status = 'failed',
         failure_reason = g.current_step || ' failed after ' || g.attempts || ' attempts: '
                          || COALESCE(g.last_error, 'unknown error')
    FROM g
   WHERE j.job_id = g.job_id AND $POLICY = 'all' AND j.failure_reason IS NULL
     AND j.current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen')
  RETURNING j.failure_reason
)
SELECT g.job_id::text, g.attempts, g.last_error, (SELECT failure_reason FROM f) AS job_failure_reason FROM g`;

function toGaveUp(row: GaveUpRow | undefined): GaveUp | null {
  if (!row) return null;
  return {
    jobId: row.job_id,
    attempts: row.attempts,
    lastError: row.last_error,
    jobFailureReason: row.job_failure_reason,
  };
}

export async function giveUp(db: Queryable, a: GiveUpArgs): Promise<GaveUp | null> {
  if (a.jobVariantsId) {
    const { rows } = await db.query<GaveUpRow>(
      `WITH g AS (
         UPDATE jobs_variants v SET given_up_at = now()
          WHERE v.job_variants_id = $1 AND v.current_step = $2 AND v.status = 'failed' AND v.attempt = $3
            AND v.given_up_at IS NULL AND v.attempt - v.attempt_base >= $4
          RETURNING v.job_id, v.current_step, v.attempt - v.attempt_base AS attempts, v.last_error
       )${FAIL_JOB_FROM_G.replace('$POLICY', '$5::text')}`,
      [a.jobVariantsId, a.step, a.attempt, a.maxAttempts, a.policy],
    );
    return toGaveUp(rows[0]);
  }
  const { rows } = await db.query<GaveUpRow>(
    `UPDATE jobs
        SET failure_reason = current_step || ' failed after ' || (attempt - attempt_base) || ' attempts: '
                             || COALESCE(last_error, 'unknown error')
      WHERE job_id = $1 AND current_step = $2 AND status = 'failed' AND attempt = $3
        AND failure_reason IS NULL AND attempt - attempt_base >= $4
      RETURNING job_id::text, attempt - attempt_base AS attempts, last_error, failure_reason AS job_failure_reason`,
    [a.jobId, a.step, a.attempt, a.maxAttempts],
  );
  return toGaveUp(rows[0]);
}

export interface RejectStepArgs extends StepSubject {
  attempt: number;
  error: string;
  policy: FanInPolicy;
}

export async function rejectStep(db: Queryable, a: RejectStepArgs): Promise<GaveUp | null> {
  const error = a.error.slice(0, 4000);
  if (a.jobVariantsId) {
    const { rows } = await db.query<GaveUpRow>(
      `WITH g AS (
         UPDATE jobs_variants v SET status = 'failed', last_error = $4, given_up_at = now()
          WHERE v.job_variants_id = $1 AND v.current_step = $2 AND v.status IN ('queued', 'failed') AND v.attempt = $3
            AND v.given_up_at IS NULL
          RETURNING v.job_id, v.current_step, v.attempt - v.attempt_base AS attempts, v.last_error
       )${FAIL_JOB_FROM_G.replace('$POLICY', '$5::text')}`,
      [a.jobVariantsId, a.step, a.attempt, error, a.policy],
    );
    return toGaveUp(rows[0]);
  }
  const { rows } = await db.query<GaveUpRow>(
    `UPDATE jobs
        SET status = 'failed', last_error = $4,
            failure_reason = current_step || ' rejected by the stage: ' || $4
      WHERE job_id = $1 AND current_step = $2 AND status IN ('queued', 'failed') AND attempt = $3
        AND failure_reason IS NULL
      RETURNING job_id::text, attempt - attempt_base AS attempts, last_error, failure_reason AS job_failure_reason`,
    [a.jobId, a.step, a.attempt, error],
  );
  return toGaveUp(rows[0]);
}

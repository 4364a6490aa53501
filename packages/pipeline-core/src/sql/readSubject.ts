/**
 * The one re-read after a non-2xx answer or a timeout (docs/healing.md, "what
 * each answer means"): where the subject is now, so the dispatcher can tell
 * "the stage recorded nothing" from "the stage failed it" from "someone else
 * moved it".
 */
import type { Queryable } from '../db.js';
import type { Status, Step } from '../steps.js';
import type { StepSubject } from './subject.js';

export interface SubjectState {
  step: Step | string;
  status: Status | string;
  attempt: number;
  attemptBase: number;
  claimedBy: string | null;
  /** The job failed for good (given up, cancelled). */
  jobFailed: boolean;
}

/** The row now, or null when it is gone. */
export async function readSubject(
  db: Queryable,
  s: Pick<StepSubject, 'jobId' | 'jobVariantsId'>,
): Promise<SubjectState | null> {
  const r = s.jobVariantsId
    ? await db.query<{
        step: string;
        status: string;
        attempt: number;
        attempt_base: number;
        claimed_by: string | null;
        job_failed: boolean;
      }>(
        `SELECT v.current_step AS step, v.status, v.attempt, v.attempt_base, v.claimed_by,
                j.failure_reason IS NOT NULL AS job_failed
           FROM jobs_variants v JOIN jobs j ON j.job_id = v.job_id
          WHERE v.job_variants_id = $1`,
        [s.jobVariantsId],
      )
    : await db.query<{
        step: string;
        status: string;
        attempt: number;
        attempt_base: number;
        claimed_by: string | null;
        job_failed: boolean;
      }>(
        `SELECT current_step AS step, status, attempt, attempt_base, claimed_by, failure_reason IS NOT NULL AS job_failed
           FROM jobs WHERE job_id = $1`,
        [s.jobId],
      );
  const row = r.rows[0];
  if (!row) return null;
  return {
    step: row.step,
    status: row.status,
    attempt: row.attempt,
    attemptBase: row.attempt_base,
    claimedBy: row.claimed_by,
    jobFailed: row.job_failed,
  };
}

/**
 * Job-level claim: job ('ad_copy_gen_kor','done') -> ('instagram_feed_gen','queued'),
 * attempt 1. Live dispatch comes from the job_state_changed channel.
 */
import type { Queryable } from '../db.js';
import { isJobLevel, nextStep, type Step } from '../steps.js';
import { type ClaimedStep, type ClaimSqlOptions, type ClaimTrigger, claimOne, logClaim } from './types.js';

export interface ClaimJobNextArgs {
  jobId: string;
  /** The job-level step the job is `done` with. */
  prev: Step;
  trigger: ClaimTrigger;
  instanceId: string;
}

const CLAIM_JOB_NEXT_SQL = /* sql */ `WITH claimed AS (
       UPDATE jobs j
          SET current_step = $2, status = 'queued', attempt = 1, attempt_base = 0, last_error = NULL,
              dispatch_requested_at = NULL, claimed_by = $5
        WHERE j.job_id = $1 AND j.current_step = $3 AND j.status = 'done' AND j.failure_reason IS NULL
        RETURNING j.job_id, j.tenant_id, NULL::uuid AS job_variants_id, j.attempt, j.attempt_base
     )${logClaim(2, 4, 5)}`;

export async function claimJobNext(
  db: Queryable,
  a: ClaimJobNextArgs,
  o: ClaimSqlOptions = {},
): Promise<ClaimedStep | null> {
  if (!isJobLevel(a.prev)) return null;
  const next = nextStep(a.prev);
  if (!next) return null;
  const values = [a.jobId, next, a.prev, a.trigger, a.instanceId];
  return claimOne(db, 'feedly_claim_job_next', CLAIM_JOB_NEXT_SQL, values, next, a.trigger, o);
}

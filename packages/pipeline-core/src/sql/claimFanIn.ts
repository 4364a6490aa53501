/**
 * Fan-in claim (docs/state-machine.md, "fan-in claim"), on the job row:
 * any variant-phase state -> ('ad_copy_gen_kor','queued'), attempt 1, when
 * every variant is at ('iou_eval','done') (policy `any`: or given up, with at
 * least one done).
 *
 * Two instances that saw the last two variants finish in different
 * transactions both run this UPDATE; under READ COMMITTED the second blocks on
 * the job row lock, then re-checks its WHERE against the updated row
 * (current_step is now ad_copy_gen_kor) and matches 0 rows.
 */
import type { Queryable } from '../db.js';
import { FAN_IN_FROM, FAN_IN_TO } from '../steps.js';
import { type ClaimedStep, type ClaimSqlOptions, type ClaimTrigger, claimOne, logClaim } from './types.js';

export type FanInPolicy = 'all' | 'any';

export interface ClaimFanInArgs {
  jobId: string;
  policy: FanInPolicy;
  trigger: ClaimTrigger;
  instanceId: string;
}

/** SQL condition: variant `v` no longer blocks the fan-in. */
export function variantFinishedSql(policyParam: string): string {
  return `((v.current_step = '${FAN_IN_FROM}' AND v.status = 'done') OR (${policyParam} = 'any' AND v.given_up_at IS NOT NULL))`;
}

const CLAIM_FAN_IN_SQL = /* sql */ `WITH claimed AS (
       UPDATE jobs j
          SET current_step = $2, status = 'queued', attempt = 1, attempt_base = 0, last_error = NULL,
              dispatch_requested_at = NULL, claimed_by = $5
        WHERE j.job_id = $1
          AND j.failure_reason IS NULL
          AND j.current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen')
          AND EXISTS (SELECT 1 FROM jobs_variants v
                       WHERE v.job_id = j.job_id AND v.current_step = '${FAN_IN_FROM}' AND v.status = 'done')
          AND NOT EXISTS (SELECT 1 FROM jobs_variants v
                           WHERE v.job_id = j.job_id AND NOT ${variantFinishedSql('$3::text')})
        RETURNING j.job_id, j.tenant_id, NULL::uuid AS job_variants_id, j.attempt, j.attempt_base
     )${logClaim(2, 4, 5)}`;

export async function claimFanIn(
  db: Queryable,
  a: ClaimFanInArgs,
  o: ClaimSqlOptions = {},
): Promise<ClaimedStep | null> {
  const values = [a.jobId, FAN_IN_TO, a.policy, a.trigger, a.instanceId];
  return claimOne(db, 'feedly_claim_fan_in', CLAIM_FAN_IN_SQL, values, FAN_IN_TO, a.trigger, o);
}

/**
 * Policy `any`: when every variant gave up (none reached iou_eval/done), the
 * job fails with the reason instead of hanging. Returns the reason when this
 * call failed the job.
 */
export async function failJobIfNoVariantSucceeded(db: Queryable, jobId: string): Promise<string | null> {
  const { rows } = await db.query<{ failure_reason: string }>(
    `UPDATE jobs j
        SET status = 'failed',
            failure_reason = 'every variant failed: ' || COALESCE(
              (SELECT v.current_step || ' failed after ' || (v.attempt - v.attempt_base) || ' attempts: '
                      || COALESCE(v.last_error, 'unknown error')
                 FROM jobs_variants v WHERE v.job_id = j.job_id ORDER BY v.given_up_at DESC NULLS LAST LIMIT 1),
              'no variant')
      WHERE j.job_id = $1
        AND j.failure_reason IS NULL
        AND j.current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen')
        AND EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id)
        AND NOT EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id AND v.given_up_at IS NULL)
      RETURNING j.failure_reason`,
    [jobId],
  );
  return rows[0]?.failure_reason ?? null;
}

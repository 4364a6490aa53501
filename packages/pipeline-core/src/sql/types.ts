import type { Step } from '../steps.js';

/** Why a step was claimed (stored in pipeline_step_runs.trigger). */
export type ClaimTrigger = 'notify' | 'recovery' | 'retry' | 'rescue' | 'fan_in' | 'manual';

/** A step this instance won with a guarded UPDATE: it, and only it, dispatches this attempt. */
export interface ClaimedStep {
  jobId: string;
  tenantId: string;
  /** Null for job-level steps. */
  jobVariantsId: string | null;
  step: Step;
  attempt: number;
  /** pipeline_step_runs row logged in the same statement as the claim. */
  runId: string;
  trigger: ClaimTrigger;
}

export interface ClaimRow {
  job_id: string;
  tenant_id: string;
  job_variants_id: string | null;
  attempt: number;
  run_id: string;
}

export function toClaimed(row: ClaimRow | undefined, step: Step, trigger: ClaimTrigger): ClaimedStep | null {
  if (!row) return null;
  return {
    jobId: row.job_id,
    tenantId: row.tenant_id,
    jobVariantsId: row.job_variants_id,
    step,
    attempt: row.attempt,
    runId: String(row.run_id),
    trigger,
  };
}

/** The SQL that logs a claim in pipeline_step_runs from a `claimed` CTE, in the same statement. */
export const LOG_CLAIM = /* sql */ `
, run AS (
  INSERT INTO pipeline_step_runs (job_id, job_variants_id, step, attempt, trigger, instance_id)
  SELECT c.job_id, c.job_variants_id, $STEP, c.attempt, $TRIGGER, $INSTANCE FROM claimed c
  RETURNING run_id
)
SELECT c.job_id::text, c.tenant_id, c.job_variants_id::text, c.attempt, r.run_id::text
  FROM claimed c CROSS JOIN run r`;

/** LOG_CLAIM with its placeholders numbered. */
export function logClaim(step: number, trigger: number, instance: number): string {
  return LOG_CLAIM.replace('$STEP', `$${step}::text`)
    .replace('$TRIGGER', `$${trigger}::text`)
    .replace('$INSTANCE', `$${instance}::text`);
}

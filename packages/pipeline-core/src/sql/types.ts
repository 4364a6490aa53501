import type { Queryable } from '../db.js';
import type { Step } from '../steps.js';

/**
 * Why a step was claimed (stored in pipeline_step_runs.trigger). `redispatch`:
 * a `queued` row of a dead claimer taken over (docs/healing.md); `manual`: a
 * row an operator's retry asked to dispatch.
 */
export type ClaimTrigger = 'notify' | 'recovery' | 'retry' | 'rescue' | 'fan_in' | 'manual' | 'redispatch';

/** A step this instance won with a guarded UPDATE: it, and only it, dispatches this attempt. */
export interface ClaimedStep {
  jobId: string;
  tenantId: string;
  /** Null for job-level steps. */
  jobVariantsId: string | null;
  step: Step;
  attempt: number;
  /** Attempts that do not count against the limit (manual resets, re-dispatches). */
  attemptBase: number;
  /** pipeline_step_runs row logged in the same statement as the claim. */
  runId: string;
  trigger: ClaimTrigger;
}

export interface ClaimRow {
  job_id: string;
  tenant_id: string;
  job_variants_id: string | null;
  attempt: number;
  attempt_base: number;
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
    attemptBase: row.attempt_base,
    runId: String(row.run_id),
    trigger,
  };
}

/**
 * A condition that is always true and turns off the wait for the WAL flush at
 * the commit of the statement's own transaction (`set_config(..., true)` is
 * `SET LOCAL`): the engine's claims and run-log writes commit without waiting
 * for the disk. Why that is safe (docs/healing.md, "Commits that do not wait
 * for the disk"): a claim lost in a crash leaves the row as it was before the
 * claim, which recovery claims again; and the stage's start, which commits
 * with a flush, cannot be durable unless everything written before it in the
 * WAL, the claim included, is durable too. Put it in a WHERE clause that runs
 * for every row written (for no row, nothing is written and nothing waits).
 */
export const NO_FLUSH_WAIT = /* sql */ `set_config('synchronous_commit', 'off', true) IS NOT NULL`;

/**
 * The SQL that logs a claim in pipeline_step_runs from a `claimed` CTE (which
 * returns job_id, tenant_id, job_variants_id, attempt, attempt_base), in the
 * same statement: one run row per attempt (docs/state-machine.md, "The run log").
 */
export const LOG_CLAIM = /* sql */ `
, run AS (
  INSERT INTO pipeline_step_runs (job_id, job_variants_id, step, attempt, attempt_base, trigger, instance_id)
  SELECT c.job_id, c.job_variants_id, $STEP, c.attempt, c.attempt_base, $TRIGGER, $INSTANCE FROM claimed c
   WHERE ${NO_FLUSH_WAIT}
  RETURNING run_id
)
SELECT c.job_id::text, c.tenant_id, c.job_variants_id::text, c.attempt, c.attempt_base, r.run_id::text
  FROM claimed c CROSS JOIN run r`;

/** LOG_CLAIM with its placeholders numbered. */
export function logClaim(step: number, trigger: number, instance: number): string {
  return LOG_CLAIM.replace('$STEP', `$${step}::text`)
    .replace('$TRIGGER', `$${trigger}::text`)
    .replace('$INSTANCE', `$${instance}::text`);
}

/**
 * The claims are the engine's hottest statements: with `prepared`, they run as
 * named prepared statements, parsed and planned once per connection
 * (docs/healing.md, "Claims as prepared statements"). Off behind a connection
 * pooler in transaction mode that cannot keep them (PgBouncer before 1.21).
 */
export interface ClaimSqlOptions {
  prepared?: boolean;
}

/** A claim statement: named when prepared statements are on. */
export function claimStatement(
  name: string,
  text: string,
  values: unknown[],
  o: ClaimSqlOptions,
): { name?: string; text: string; values: unknown[] } {
  return o.prepared ? { name, text, values } : { text, values };
}

/** Runs the claim statement of one subject (named when prepared) and returns the step it claimed, or null. */
export async function claimOne(
  db: Queryable,
  name: string,
  text: string,
  values: unknown[],
  step: Step,
  trigger: ClaimTrigger,
  o: ClaimSqlOptions,
): Promise<ClaimedStep | null> {
  const { rows } = await db.query<ClaimRow>(claimStatement(name, text, values, o));
  return toClaimed(rows[0], step, trigger);
}

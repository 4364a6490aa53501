/**
 * Variant claim (docs/state-machine.md, "claim"): (prev,'done') -> (next,'queued'), attempt 1.
 * The guarded UPDATE is the exactly-once gate: of all instances and sweeps that
 * saw the same `done`, exactly one gets a row back. The claim is logged in
 * pipeline_step_runs in the same statement (one round trip).
 */
import type { Queryable } from '../db.js';
import { FAN_IN_FROM, isVariantLevel, nextStep, type Step } from '../steps.js';
import {
  type ClaimedStep,
  type ClaimRow,
  type ClaimSqlOptions,
  type ClaimTrigger,
  claimOne,
  claimStatement,
  logClaim,
  NO_FLUSH_WAIT,
  toClaimed,
} from './types.js';

export interface ClaimVariantArgs {
  jobVariantsId: string;
  /** The step the variant is `done` with. */
  prev: Step;
  trigger: ClaimTrigger;
  instanceId: string;
}

/** The variant step a `(prev,'done')` variant moves on to, or null (fan-in or nothing). */
export function variantSuccessor(prev: Step): Step | null {
  if (prev === FAN_IN_FROM) return null;
  const next = nextStep(prev);
  return next && isVariantLevel(next) ? next : null;
}

const CLAIM_VARIANT_SQL = /* sql */ `WITH claimed AS (
       UPDATE jobs_variants v
          SET current_step = $2, status = 'queued', attempt = 1, attempt_base = 0, last_error = NULL,
              dispatch_requested_at = NULL, claimed_by = $5
         FROM jobs j
        WHERE v.job_variants_id = $1 AND j.job_id = v.job_id
          AND v.current_step = $3 AND v.status = 'done'
          AND j.failure_reason IS NULL
        RETURNING v.job_id, j.tenant_id, v.job_variants_id, v.attempt, v.attempt_base
     )${logClaim(2, 4, 5)}`;

export async function claimVariant(
  db: Queryable,
  a: ClaimVariantArgs,
  o: ClaimSqlOptions = {},
): Promise<ClaimedStep | null> {
  const next = variantSuccessor(a.prev);
  if (!next) return null;
  const values = [a.jobVariantsId, next, a.prev, a.trigger, a.instanceId];
  return claimOne(db, 'feedly_claim_variant', CLAIM_VARIANT_SQL, values, next, a.trigger, o);
}

export interface ClaimVariantsArgs {
  /** Variants and the step each is `done` with (mixed steps allowed). */
  items: ReadonlyArray<{ jobVariantsId: string; prev: Step }>;
  trigger: ClaimTrigger;
  instanceId: string;
}

/**
 * The claim of `claimVariant` for many variants in ONE statement and one
 * commit (the notifications of one event-loop turn, or a recovery sweep's
 * page): the same guard per row, so a row another instance or a live event
 * claimed first is simply not returned (a row locked by a claim in progress
 * is waited for and re-checked). Rows are locked in key order, so two batches
 * claiming overlapping sets cannot deadlock each other.
 */
const CLAIM_VARIANTS_SQL = /* sql */ `WITH req AS (
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) AS r(job_variants_id, prev, next)
     ), target AS (
       SELECT v.job_variants_id, r.prev, r.next FROM jobs_variants v JOIN req r USING (job_variants_id)
        WHERE v.current_step = r.prev AND v.status = 'done'
        ORDER BY v.job_variants_id
          FOR UPDATE OF v
     ), claimed AS (
       UPDATE jobs_variants v
          SET current_step = t.next, status = 'queued', attempt = 1, attempt_base = 0, last_error = NULL,
              dispatch_requested_at = NULL, claimed_by = $5
         FROM target t, jobs j
        WHERE v.job_variants_id = t.job_variants_id AND j.job_id = v.job_id
          AND v.current_step = t.prev AND v.status = 'done'
          AND j.failure_reason IS NULL
        RETURNING v.job_id, j.tenant_id, v.job_variants_id, v.current_step AS step, v.attempt, v.attempt_base
     ), run AS (
       INSERT INTO pipeline_step_runs (job_id, job_variants_id, step, attempt, attempt_base, trigger, instance_id)
       SELECT c.job_id, c.job_variants_id, c.step, c.attempt, c.attempt_base, $4::text, $5::text FROM claimed c
        WHERE ${NO_FLUSH_WAIT}
       RETURNING run_id, job_variants_id
     )
     SELECT c.job_id::text, c.tenant_id, c.job_variants_id::text, c.step, c.attempt, c.attempt_base, r.run_id::text
       FROM claimed c JOIN run r USING (job_variants_id)`;

export async function claimVariants(
  db: Queryable,
  a: ClaimVariantsArgs,
  o: ClaimSqlOptions = {},
): Promise<ClaimedStep[]> {
  const ids: string[] = [];
  const prevs: string[] = [];
  const nexts: string[] = [];
  for (const it of a.items) {
    const next = variantSuccessor(it.prev);
    if (!next) continue;
    ids.push(it.jobVariantsId);
    prevs.push(it.prev);
    nexts.push(next);
  }
  if (ids.length === 0) return [];
  const values = [ids, prevs, nexts, a.trigger, a.instanceId];
  const { rows } = await db.query<ClaimRow & { step: Step }>(
    claimStatement('feedly_claim_variants', CLAIM_VARIANTS_SQL, values, o),
  );
  return rows.map((r) => toClaimed(r, r.step, a.trigger) as ClaimedStep);
}

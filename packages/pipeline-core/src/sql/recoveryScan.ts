/**
 * Recovery scan: the rows that may need a transition that did not happen
 * (a lost notification, a crash, a stage that never answered). The caller
 * decides per row and claims through the same guarded functions as live
 * dispatch, so a sweep racing a live event cannot double-dispatch.
 *
 * Each query repeats the predicate of a partial index of 0001 literally so the
 * planner can use it (jobs_variants_actionable_idx, jobs_active_idx,
 * jobs_variant_phase_idx): the sweep is an index range scan over the recovery
 * window, however many finished rows the tables hold.
 */
import type { Queryable } from '../db.js';
import { isStep, type Step } from '../steps.js';
import { type FanInPolicy, variantFinishedSql } from './claimFanIn.js';

export interface RecoveryScanArgs {
  /** Only rows whose updated_at is within this many seconds. */
  windowSeconds: number;
  /** Rows in flight younger than this cannot be stale yet and are not returned. */
  minRescueAfterMs: number;
  policy: FanInPolicy;
  /** Restrict to one job (the job_state_changed handler). */
  jobId?: string | undefined;
  /** Bound on the rows returned per query. */
  limit?: number;
}

export interface RecoveryRow {
  jobId: string;
  jobVariantsId: string | null;
  step: Step;
  status: string;
  attempt: number;
  attemptBase: number;
  /** now() - updated_at, computed by the database (no clock skew). */
  ageMs: number;
  dispatchRequested: boolean;
}

export interface FanInCandidate {
  jobId: string;
  /** At least one variant reached iou_eval/done (policy any: otherwise the job fails). */
  hasSuccess: boolean;
}

export interface RecoveryScanResult {
  variants: RecoveryRow[];
  jobs: RecoveryRow[];
  fanIn: FanInCandidate[];
}

interface RawRow {
  job_id: string;
  job_variants_id: string | null;
  current_step: string;
  status: string;
  attempt: number;
  attempt_base: number;
  age_ms: string;
  requested: boolean;
}

/** The variant scan; exported for the EXPLAIN test. */
export function variantScanSql(scoped: boolean): string {
  return `SELECT v.job_id::text, v.job_variants_id::text, v.current_step, v.status, v.attempt, v.attempt_base,
          floor(extract(epoch FROM (now() - v.updated_at)) * 1000)::bigint AS age_ms,
          v.dispatch_requested_at IS NOT NULL AS requested
     FROM jobs_variants v
    WHERE NOT (v.current_step = 'iou_eval' AND v.status = 'done')
      AND v.updated_at > now() - $1 * interval '1 second'
      AND v.given_up_at IS NULL
      AND (v.status IN ('done', 'failed') OR v.dispatch_requested_at IS NOT NULL
           OR v.updated_at < now() - $2 * interval '1 millisecond')
      AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = v.job_id AND j.failure_reason IS NULL)
      ${scoped ? 'AND v.job_id = $4' : ''}
    ORDER BY v.updated_at
    LIMIT $3`;
}

/** The job-level scan (jobs_active_idx); exported for the EXPLAIN test. */
export function jobScanSql(scoped: boolean): string {
  return `SELECT j.job_id::text, NULL::text AS job_variants_id, j.current_step, j.status, j.attempt, j.attempt_base,
          floor(extract(epoch FROM (now() - j.updated_at)) * 1000)::bigint AS age_ms,
          j.dispatch_requested_at IS NOT NULL AS requested
     FROM jobs j
    WHERE j.failure_reason IS NULL AND NOT (j.current_step = 'instagram_feed_gen' AND j.status = 'done')
      AND j.updated_at > now() - $1 * interval '1 second'
      AND j.current_step IN ('ad_copy_gen_kor', 'instagram_feed_gen')
      AND (j.status IN ('done', 'failed') OR j.dispatch_requested_at IS NOT NULL
           OR j.updated_at < now() - $2 * interval '1 millisecond')
      ${scoped ? 'AND j.job_id = $4' : ''}
    ORDER BY j.updated_at
    LIMIT $3`;
}

/** Jobs still in the variant phase whose variants are all finished (jobs_variant_phase_idx). */
export function fanInScanSql(scoped: boolean): string {
  return `SELECT j.job_id::text,
          EXISTS (SELECT 1 FROM jobs_variants v
                   WHERE v.job_id = j.job_id AND v.current_step = 'iou_eval' AND v.status = 'done') AS has_success
     FROM jobs j
    WHERE j.failure_reason IS NULL AND j.current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen')
      AND EXISTS (SELECT 1 FROM jobs_variants v
                   WHERE v.job_id = j.job_id AND v.updated_at > now() - $1 * interval '1 second')
      AND NOT EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id AND NOT ${variantFinishedSql('$2::text')})
      ${scoped ? 'AND j.job_id = $4' : ''}
    LIMIT $3`;
}

function toRow(r: RawRow): RecoveryRow | null {
  if (!isStep(r.current_step)) return null;
  return {
    jobId: r.job_id,
    jobVariantsId: r.job_variants_id,
    step: r.current_step,
    status: r.status,
    attempt: r.attempt,
    attemptBase: r.attempt_base,
    ageMs: Number(r.age_ms),
    dispatchRequested: r.requested,
  };
}

export async function recoveryScan(db: Queryable, a: RecoveryScanArgs): Promise<RecoveryScanResult> {
  const scoped = a.jobId !== undefined;
  const limit = a.limit ?? 5000;
  const base: unknown[] = [a.windowSeconds, a.minRescueAfterMs, limit];
  if (scoped) base.push(a.jobId);
  const fanBase: unknown[] = [a.windowSeconds, a.policy, limit];
  if (scoped) fanBase.push(a.jobId);
  const [v, j, f] = await Promise.all([
    db.query<RawRow>(variantScanSql(scoped), base),
    db.query<RawRow>(jobScanSql(scoped), base),
    db.query<{ job_id: string; has_success: boolean }>(fanInScanSql(scoped), fanBase),
  ]);
  return {
    variants: v.rows.map(toRow).filter((r): r is RecoveryRow => r !== null),
    jobs: j.rows.map(toRow).filter((r): r is RecoveryRow => r !== null),
    fanIn: f.rows.map((r) => ({ jobId: r.job_id, hasSuccess: r.has_success })),
  };
}

/**
 * Recovery scans (docs/healing.md, "recovery that cannot be starved"): the
 * rows that may need a transition that did not happen (a lost notification,
 * a crash, a stage that never answered). The engine decides per row with the
 * pure `decide()` and claims through the same guarded functions as live
 * dispatch, so a sweep racing a live event cannot double-dispatch.
 *
 * - Variants: keyset pages of `pageSize` (default 1,000) on
 *   (updated_at, job_variants_id) over the recovery window, through
 *   jobs_variants_recovery_idx (0004), whose predicate leaves out the rows no
 *   sweep acts on: finished variants, `user_img_input` in any status and
 *   `img_gen` unless done. However many rows are parked upstream, they are
 *   never read, so they cannot hide the real work.
 * - Job-level rows: the same, through jobs_job_phase_recovery_idx.
 * - `queued` rows at a step with a route, by claimer (jobs_*_queued_claimer_idx):
 *   this instance's own (re-sent when no call is in flight), a dead or missing
 *   claimer's (re-dispatched), and rows an operator's retry asked to dispatch,
 *   whatever their age.
 * - Requested `done` rows (dispatch_requested_at set by a manual retry), read
 *   through their own index whatever their age.
 * - Fan-in candidates: jobs in the variant phase whose variants all finished.
 *
 * Each query repeats the predicate of its partial index literally, so the
 * planner can use it (checked by EXPLAIN in the tests).
 */
import type { Queryable } from '../db.js';
import { isStep, type Status, type Step } from '../steps.js';
import { type FanInPolicy, variantFinishedSql } from './claimFanIn.js';

export interface RecoveryRow {
  jobId: string;
  tenantId: string;
  jobVariantsId: string | null;
  step: Step;
  status: Status;
  attempt: number;
  attemptBase: number;
  /** now() - updated_at, computed by the database (no clock skew). */
  ageMs: number;
  claimedBy: string | null;
  dispatchRequested: boolean;
  /** For this instance's own `queued` rows: the run row of the current attempt (null when none). */
  runId: string | null;
}

export interface FanInCandidate {
  jobId: string;
  /** At least one variant reached iou_eval/done (policy any: otherwise the job fails). */
  hasSuccess: boolean;
}

/** Where a keyset walk stopped: the last (updated_at, id) returned; null before the first page. */
export interface ScanCursor {
  /** updated_at as PostgreSQL's text form (microseconds kept). */
  updatedAt: string;
  id: string;
}

export interface ScanPage {
  rows: RecoveryRow[];
  /** Cursor for the next page, or null when the window is exhausted. */
  next: ScanCursor | null;
}

interface RawRow {
  job_id: string;
  tenant_id: string;
  job_variants_id: string | null;
  current_step: string;
  status: string;
  attempt: number;
  attempt_base: number;
  age_ms: string;
  claimed_by: string | null;
  requested: boolean;
  run_id?: string | null;
  cursor_ts?: string;
}

const VARIANT_COLUMNS = `v.job_id::text, j.tenant_id, v.job_variants_id::text, v.current_step, v.status, v.attempt,
          v.attempt_base, floor(extract(epoch FROM (now() - v.updated_at)) * 1000)::bigint AS age_ms,
          v.claimed_by, v.dispatch_requested_at IS NOT NULL AS requested`;

const JOB_COLUMNS = `j.job_id::text, j.tenant_id, NULL::text AS job_variants_id, j.current_step, j.status, j.attempt,
          j.attempt_base, floor(extract(epoch FROM (now() - j.updated_at)) * 1000)::bigint AS age_ms,
          j.claimed_by, j.dispatch_requested_at IS NOT NULL AS requested`;

/**
 * One keyset page of variants a sweep may act on: done (their next step was
 * never claimed), failed (retry or give up), or running for longer than
 * `runningOlderThanMs` (rescue once the deadline passed). Exported for the
 * EXPLAIN test. Params: $1 window seconds, $2 page size, $3 cursor ts (text
 * or null), $4 cursor id, [$5 job id].
 */
export function variantPageSql(scoped: boolean): string {
  // The job is read per row (LATERAL ... LIMIT 1 is never flattened into a join): a primary-key
  // probe for each of the page's rows, whatever the size of jobs.
  return `SELECT ${VARIANT_COLUMNS}, v.updated_at::text AS cursor_ts,
          j.failure_reason IS NOT NULL OR v.given_up_at IS NOT NULL AS finished
     FROM jobs_variants v
     CROSS JOIN LATERAL (SELECT jj.tenant_id, jj.failure_reason FROM jobs jj WHERE jj.job_id = v.job_id LIMIT 1) j
    WHERE NOT (v.current_step = 'iou_eval' AND v.status = 'done')
      AND v.current_step <> 'user_img_input'
      AND (v.current_step <> 'img_gen' OR v.status = 'done')
      AND v.updated_at > now() - $1 * interval '1 second'
      AND ($3::timestamptz IS NULL OR (v.updated_at, v.job_variants_id) > ($3::timestamptz, $4::uuid))
      ${scoped ? 'AND v.job_id = $5' : ''}
    ORDER BY v.updated_at, v.job_variants_id
    LIMIT $2`;
}

/**
 * Filters a page's raw rows: the page walks every indexed row in the window
 * (so a page full of rows nobody can act on does not end the walk), only
 * these are returned to the engine. `finished`: the job failed for good or
 * the variant was given up.
 */
function actionable(r: RawRow, runningOlderThanMs: number, finished: boolean): boolean {
  if (finished) return false;
  if (r.status === 'done' || r.status === 'failed') return true;
  return r.status === 'running' && Number(r.age_ms) > runningOlderThanMs;
}

function toRow(r: RawRow): RecoveryRow | null {
  if (!isStep(r.current_step)) return null;
  return {
    jobId: r.job_id,
    tenantId: r.tenant_id,
    jobVariantsId: r.job_variants_id,
    step: r.current_step,
    status: r.status as Status,
    attempt: r.attempt,
    attemptBase: r.attempt_base,
    ageMs: Number(r.age_ms),
    claimedBy: r.claimed_by,
    dispatchRequested: r.requested,
    runId: r.run_id ?? null,
  };
}

export interface PageArgs {
  windowSeconds: number;
  /** Running rows younger than this cannot be past their deadline yet and are not returned. */
  runningOlderThanMs: number;
  pageSize?: number;
  cursor: ScanCursor | null;
  jobId?: string | undefined;
}

/** One page of the variant walk. */
export async function scanVariantPage(db: Queryable, a: PageArgs): Promise<ScanPage> {
  const pageSize = a.pageSize ?? 1000;
  const params: unknown[] = [a.windowSeconds, pageSize, a.cursor?.updatedAt ?? null, a.cursor?.id ?? null];
  if (a.jobId !== undefined) params.push(a.jobId);
  const { rows } = await db.query<RawRow & { finished: boolean }>(variantPageSql(a.jobId !== undefined), params);
  const last = rows[rows.length - 1];
  return {
    rows: rows
      .filter((r) => actionable(r, a.runningOlderThanMs, r.finished))
      .map(toRow)
      .filter((r): r is RecoveryRow => r !== null),
    next:
      rows.length < pageSize || !last
        ? null
        : { updatedAt: last.cursor_ts as string, id: last.job_variants_id as string },
  };
}

/** One keyset page of job-level rows (jobs_job_phase_recovery_idx). Same params as variantPageSql. */
export function jobPageSql(scoped: boolean): string {
  return `SELECT ${JOB_COLUMNS}, j.updated_at::text AS cursor_ts
     FROM jobs j
    WHERE j.failure_reason IS NULL AND j.current_step IN ('ad_copy_gen_kor', 'instagram_feed_gen')
      AND NOT (j.current_step = 'instagram_feed_gen' AND j.status = 'done')
      AND j.updated_at > now() - $1 * interval '1 second'
      AND ($3::timestamptz IS NULL OR (j.updated_at, j.job_id) > ($3::timestamptz, $4::uuid))
      ${scoped ? 'AND j.job_id = $5' : ''}
    ORDER BY j.updated_at, j.job_id
    LIMIT $2`;
}

export async function scanJobPage(db: Queryable, a: PageArgs): Promise<ScanPage> {
  const pageSize = a.pageSize ?? 1000;
  const params: unknown[] = [a.windowSeconds, pageSize, a.cursor?.updatedAt ?? null, a.cursor?.id ?? null];
  if (a.jobId !== undefined) params.push(a.jobId);
  const { rows } = await db.query<RawRow>(jobPageSql(a.jobId !== undefined), params);
  const last = rows[rows.length - 1];
  return {
    rows: rows
      .filter((r) => actionable(r, a.runningOlderThanMs, false))
      .map(toRow)
      .filter((r): r is RecoveryRow => r !== null),
    next: rows.length < pageSize || !last ? null : { updatedAt: last.cursor_ts as string, id: last.job_id },
  };
}

export interface QueuedScanArgs {
  /** This instance: its own rows come back with the run id of their attempt. */
  self: string;
  /**
   * Which claimers' rows: 'all-but-live-peers' (sweeps: own, dead, missing and
   * requested rows), or a list of claimers (the liveness tick's dead instances).
   */
  claimers: 'all-but-live-peers' | readonly string[];
  /** Instances not dead (only for 'all-but-live-peers'). */
  live?: readonly string[];
  jobId?: string | undefined;
  limit?: number;
}

/**
 * `queued` rows at a step with a route (the claimed ones), for re-sends and
 * re-dispatches. Whatever their age: a claim is never outside the window.
 */
export async function scanQueued(db: Queryable, a: QueuedScanArgs): Promise<RecoveryRow[]> {
  const limit = a.limit ?? 10_000;
  const byList = a.claimers !== 'all-but-live-peers';
  const who = byList
    ? 'x.claimed_by = ANY($2::text[])'
    : `(x.claimed_by IS NULL OR x.claimed_by = $1 OR x.dispatch_requested_at IS NOT NULL
        OR NOT (x.claimed_by = ANY($2::text[])))`;
  const scope = a.jobId !== undefined ? 'AND x.job_id = $4' : '';
  const runOf = (subjectCol: string) => `CASE WHEN x.claimed_by = $1 THEN
      (SELECT r.run_id::text FROM pipeline_step_runs r
        WHERE ${subjectCol} AND r.step = x.current_step AND r.attempt = x.attempt
        ORDER BY r.run_id DESC LIMIT 1) END AS run_id`;
  const params: unknown[] = [a.self, byList ? [...(a.claimers as string[])] : [...(a.live ?? [])], limit];
  if (a.jobId !== undefined) params.push(a.jobId);
  const [v, j] = await Promise.all([
    db.query<RawRow>(
      `SELECT ${VARIANT_COLUMNS.replaceAll('v.', 'x.')}, ${runOf('r.job_variants_id = x.job_variants_id')}
         FROM jobs_variants x JOIN jobs j ON j.job_id = x.job_id
        WHERE x.status = 'queued' AND x.current_step NOT IN ('user_img_input', 'img_gen')
          AND ${who} AND j.failure_reason IS NULL ${scope}
        LIMIT $3`,
      params,
    ),
    db.query<RawRow>(
      `SELECT ${JOB_COLUMNS.replaceAll('j.', 'x.')}, ${runOf('r.job_id = x.job_id AND r.job_variants_id IS NULL')}
         FROM jobs x
        WHERE x.status = 'queued' AND x.current_step IN ('ad_copy_gen_kor', 'instagram_feed_gen')
          AND ${who} AND x.failure_reason IS NULL ${scope}
        LIMIT $3`,
      params,
    ),
  ]);
  return [...v.rows, ...j.rows].map(toRow).filter((r): r is RecoveryRow => r !== null);
}

/**
 * Variants and jobs at (S,'done') that an operator's retry asked to dispatch
 * (dispatch_requested_at set by retryJob on the siblings of a retried
 * variant), through the dispatch_requested indexes of 0003, whatever their age.
 */
export async function scanRequestedDone(db: Queryable, jobId?: string): Promise<RecoveryRow[]> {
  const scope = jobId !== undefined ? 'AND v.job_id = $1' : '';
  const params = jobId !== undefined ? [jobId] : [];
  const { rows } = await db.query<RawRow>(
    `SELECT ${VARIANT_COLUMNS}
       FROM jobs_variants v JOIN jobs j ON j.job_id = v.job_id
      WHERE v.dispatch_requested_at IS NOT NULL AND v.status = 'done' AND j.failure_reason IS NULL ${scope}
      LIMIT 10000`,
    params,
  );
  return rows.map(toRow).filter((r): r is RecoveryRow => r !== null);
}

/**
 * Fan-in candidates, one keyset page (by job_id) of the jobs still in the
 * variant phase (jobs_variant_phase_idx), each checked through its variants
 * (jobs_variants_job_id_idx): every variant finished (iou_eval done, or given
 * up under policy `any`) and one of them updated within the window. Params:
 * $1 window seconds, $2 policy, $3 page size, $4 cursor job id (or null),
 * [$5 job id].
 */
export function fanInPageSql(scoped: boolean): string {
  return `WITH page AS (
       SELECT j.job_id FROM jobs j
        WHERE j.failure_reason IS NULL AND j.current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen')
          AND ($4::uuid IS NULL OR j.job_id > $4::uuid)
          ${scoped ? 'AND j.job_id = $5' : ''}
        ORDER BY j.job_id
        LIMIT $3
     )
     SELECT p.job_id::text, a.has_success, a.all_finished, a.recent
       FROM page p
       CROSS JOIN LATERAL (
         SELECT coalesce(bool_or(v.current_step = 'iou_eval' AND v.status = 'done'), false) AS has_success,
                coalesce(bool_and(${variantFinishedSql('$2::text')}), false) AS all_finished,
                coalesce(max(v.updated_at) > now() - $1 * interval '1 second', false) AS recent
           FROM jobs_variants v WHERE v.job_id = p.job_id) a
      ORDER BY p.job_id`;
}

export interface FanInPage {
  candidates: FanInCandidate[];
  /** The last job id of the page, or null when the walk is over. */
  next: string | null;
}

export async function scanFanInPage(
  db: Queryable,
  a: {
    windowSeconds: number;
    policy: FanInPolicy;
    cursor: string | null;
    pageSize?: number;
    jobId?: string | undefined;
  },
): Promise<FanInPage> {
  const pageSize = a.pageSize ?? 1000;
  const params: unknown[] = [a.windowSeconds, a.policy, pageSize, a.cursor];
  if (a.jobId !== undefined) params.push(a.jobId);
  const { rows } = await db.query<{ job_id: string; has_success: boolean; all_finished: boolean; recent: boolean }>(
    fanInPageSql(a.jobId !== undefined),
    params,
  );
  const last = rows[rows.length - 1];
  return {
    candidates: rows
      .filter((r) => r.all_finished && r.recent)
      .map((r) => ({ jobId: r.job_id, hasSuccess: r.has_success })),
    next: rows.length < pageSize || !last ? null : last.job_id,
  };
}

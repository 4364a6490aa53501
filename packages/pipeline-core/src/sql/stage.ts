/**
 * The stage's side of the state machine (docs/state-machine.md: "stage: start" and
 * "stage: finish"). Shared by apps/stage-api and every stage double, so the
 * guards exist in exactly one place.
 *
 * start:  (prev,'done') [manual call, no attempt]  or  (step,'queued') [attempt must match when given]
 *         -> (step,'running')
 * finish: (step,'running') with the same attempt -> (step,'done') | (step,'failed', last_error)
 *
 * A job that failed for good (failure_reason set: given up, cancelled) is never started.
 */
import { FAN_IN_FROM, isJobLevel, prevStep, type Step, type Status } from '../steps.js';
import type { Queryable } from '../db.js';

export interface StageSubject {
  step: Step;
  jobId: string;
  /** Required for variant-level steps, absent for job-level steps. */
  jobVariantsId?: string | undefined;
  /** The dispatcher's fencing token; absent on manual calls. */
  attempt?: number | undefined;
  /**
   * A random token of this start (one per request), written on the row with
   * it. After a start or finish whose commit answer was lost, `stageReadBack`
   * tells whether the row is this request's (docs/stage-api.md).
   */
  token?: string | undefined;
}

export interface RowState {
  current_step: string;
  status: Status | string;
  attempt: number;
  failure_reason?: string | null;
}

export type StartResult =
  | { started: true; attempt: number; tenantId: string }
  | { started: false; state: RowState | null };

function checkSubject(s: StageSubject): void {
  if (isJobLevel(s.step)) {
    if (s.jobVariantsId) throw new Error(`step ${s.step} is job level: no job_variants_id`);
  } else if (!s.jobVariantsId) {
    throw new Error(`step ${s.step} is variant level: job_variants_id required`);
  }
}

/**
 * Stage start: one guarded UPDATE. Returns the attempt that now runs (the
 * fencing token the finish must carry), or the row's current state when the
 * subject is not ready (the caller answers 409, or 404 when state is null).
 */
export async function stageStart(db: Queryable, s: StageSubject): Promise<StartResult> {
  checkSubject(s);
  const attempt = s.attempt ?? null;
  if (!isJobLevel(s.step)) {
    const prev = prevStep(s.step);
    const { rows } = await db.query<{ attempt: number; tenant_id: string }>(
      `UPDATE jobs_variants v
          SET current_step = $3, status = 'running',
              attempt = CASE WHEN v.current_step = $3 THEN v.attempt ELSE 1 END,
              attempt_base = CASE WHEN v.current_step = $3 THEN v.attempt_base ELSE 0 END,
              last_error = NULL, start_token = $6
         FROM jobs j
        WHERE v.job_variants_id = $1 AND v.job_id = $2 AND j.job_id = v.job_id
          AND j.failure_reason IS NULL
          AND ((v.current_step = $3 AND v.status = 'queued' AND ($4::int IS NULL OR v.attempt = $4))
               OR ($4::int IS NULL AND v.current_step = $5 AND v.status = 'done'))
        RETURNING v.attempt, j.tenant_id`,
      [s.jobVariantsId, s.jobId, s.step, attempt, prev, s.token ?? null],
    );
    const row = rows[0];
    if (row) return { started: true, attempt: row.attempt, tenantId: row.tenant_id };
    const cur = await db.query<RowState>(
      `SELECT v.current_step, v.status, v.attempt, j.failure_reason
         FROM jobs_variants v JOIN jobs j USING (job_id)
        WHERE v.job_variants_id = $1 AND v.job_id = $2`,
      [s.jobVariantsId, s.jobId],
    );
    return { started: false, state: cur.rows[0] ?? null };
  }

  // Job level. The manual "prev done" of ad_copy_gen_kor is the fan-in condition.
  const prev = prevStep(s.step);
  const { rows } = await db.query<{ attempt: number; tenant_id: string }>(
    `UPDATE jobs j
        SET current_step = $2, status = 'running',
            attempt = CASE WHEN j.current_step = $2 THEN j.attempt ELSE 1 END,
            attempt_base = CASE WHEN j.current_step = $2 THEN j.attempt_base ELSE 0 END,
            last_error = NULL, start_token = $6
      WHERE j.job_id = $1 AND j.failure_reason IS NULL
        AND ((j.current_step = $2 AND j.status = 'queued' AND ($3::int IS NULL OR j.attempt = $3))
             OR ($3::int IS NULL AND $2 = 'instagram_feed_gen' AND j.current_step = $4 AND j.status = 'done')
             OR ($3::int IS NULL AND $2 = 'ad_copy_gen_kor'
                 AND j.current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen')
                 AND EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id)
                 AND NOT EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id
                                   AND NOT (v.current_step = $5 AND v.status = 'done'))))
      RETURNING j.attempt, j.tenant_id`,
    [s.jobId, s.step, attempt, prev, FAN_IN_FROM, s.token ?? null],
  );
  const row = rows[0];
  if (row) return { started: true, attempt: row.attempt, tenantId: row.tenant_id };
  const cur = await db.query<RowState>(
    'SELECT current_step, status, attempt, failure_reason FROM jobs WHERE job_id = $1',
    [s.jobId],
  );
  return { started: false, state: cur.rows[0] ?? null };
}

export interface FinishArgs {
  step: Step;
  jobId: string;
  jobVariantsId?: string | undefined;
  /** The attempt returned by stageStart. */
  attempt: number;
}

/**
 * Stage finish, success: (step,'running',attempt) -> (step,'done'). Run it in
 * the same transaction as the result inserts; when it returns false the
 * attempt was superseded (rescued, cancelled) and the caller must roll back
 * its results.
 */
export async function stageFinishDone(db: Queryable, f: FinishArgs): Promise<boolean> {
  if (f.jobVariantsId) {
    const r = await db.query(
      `UPDATE jobs_variants SET status = 'done', last_error = NULL
        WHERE job_variants_id = $1 AND job_id = $2 AND current_step = $3 AND status = 'running' AND attempt = $4`,
      [f.jobVariantsId, f.jobId, f.step, f.attempt],
    );
    return r.rowCount === 1;
  }
  const r = await db.query(
    `UPDATE jobs SET status = 'done', last_error = NULL,
            completed_at = CASE WHEN $2 = 'instagram_feed_gen' THEN now() ELSE completed_at END
      WHERE job_id = $1 AND current_step = $2 AND status = 'running' AND attempt = $3 AND failure_reason IS NULL`,
    [f.jobId, f.step, f.attempt],
  );
  return r.rowCount === 1;
}

/** Stage finish, failure: (step,'running',attempt) -> (step,'failed') with the error. */
export async function stageFinishFailed(db: Queryable, f: FinishArgs & { error: string }): Promise<boolean> {
  const error = f.error.slice(0, 4000);
  if (f.jobVariantsId) {
    const r = await db.query(
      `UPDATE jobs_variants SET status = 'failed', last_error = $5
        WHERE job_variants_id = $1 AND job_id = $2 AND current_step = $3 AND status = 'running' AND attempt = $4`,
      [f.jobVariantsId, f.jobId, f.step, f.attempt, error],
    );
    return r.rowCount === 1;
  }
  const r = await db.query(
    `UPDATE jobs SET status = 'failed', last_error = $4
      WHERE job_id = $1 AND current_step = $2 AND status = 'running' AND attempt = $3 AND failure_reason IS NULL`,
    [f.jobId, f.step, f.attempt, error],
  );
  return r.rowCount === 1;
}

export interface ReadBack {
  /** The row as it is now (null: gone). */
  state: RowState | null;
  /** The row is at `step` with this request's start token. */
  ours: boolean;
}

/**
 * After a start or a finish whose commit answer was lost (the connection
 * died): the row as it is now, and whether it carries this request's start
 * token. `ours` with status 'running' means the start committed; 'done' or
 * 'failed' means the finish did.
 */
export async function stageReadBack(db: Queryable, s: StageSubject & { token: string }): Promise<ReadBack> {
  checkSubject(s);
  const r = s.jobVariantsId
    ? await db.query<RowState & { start_token: string | null }>(
        `SELECT v.current_step, v.status, v.attempt, j.failure_reason, v.start_token
           FROM jobs_variants v JOIN jobs j USING (job_id)
          WHERE v.job_variants_id = $1 AND v.job_id = $2`,
        [s.jobVariantsId, s.jobId],
      )
    : await db.query<RowState & { start_token: string | null }>(
        'SELECT current_step, status, attempt, failure_reason, start_token FROM jobs WHERE job_id = $1',
        [s.jobId],
      );
  const row = r.rows[0];
  if (!row) return { state: null, ours: false };
  const { start_token, ...state } = row;
  return { state, ours: state.current_step === s.step && start_token === s.token };
}

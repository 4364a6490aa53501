/** The outcome of a dispatch, written on its pipeline_step_runs row after the HTTP answer. */
import type { Queryable } from '../db.js';

export type RunState = 'succeeded' | 'failed' | 'conflict' | 'rejected' | 'error' | 'timeout' | 'aborted';

export interface FinishRunArgs {
  runId: string;
  state: RunState;
  httpStatus: number | null;
  durationMs: number;
  error?: string | null;
}

export async function finishRun(db: Queryable, a: FinishRunArgs): Promise<void> {
  await db.query(
    `UPDATE pipeline_step_runs
        SET state = $2, http_status = $3, duration_ms = $4, error = $5, finished_at = now()
      WHERE run_id = $1`,
    [a.runId, a.state, a.httpStatus, Math.round(a.durationMs), a.error ? a.error.slice(0, 4000) : null],
  );
}

export interface StepRunRow {
  run_id: string;
  job_id: string;
  job_variants_id: string | null;
  step: string;
  attempt: number;
  trigger: string;
  state: string;
  instance_id: string;
  claimed_at: Date;
  finished_at: Date | null;
  http_status: number | null;
  duration_ms: number | null;
  error: string | null;
}

/** Every dispatch of a job (variants included), oldest first. */
export async function listStepRuns(db: Queryable, jobId: string): Promise<StepRunRow[]> {
  const { rows } = await db.query<StepRunRow>(
    `SELECT run_id::text, job_id::text, job_variants_id::text, step, attempt, trigger, state, instance_id,
            claimed_at, finished_at, http_status, duration_ms, error
       FROM pipeline_step_runs WHERE job_id = $1 ORDER BY claimed_at, run_id`,
    [jobId],
  );
  return rows;
}

/** The outcome of a dispatch, written on its pipeline_step_runs row after the HTTP answer. */
import type { Queryable } from '../db.js';
import { NO_FLUSH_WAIT } from './types.js';

/**
 * How an attempt's dispatch ended (docs/state-machine.md, "The run log"): succeeded,
 * failed (the stage recorded the failure), rejected (400/422), conflict (409,
 * or the row moved on), dropped (the job is gone), error (the answer was lost
 * while the stage ran it), timeout (no answer by the deadline: rescued),
 * aborted (the instance stopped first).
 */
export type RunState = 'succeeded' | 'failed' | 'conflict' | 'rejected' | 'dropped' | 'error' | 'timeout' | 'aborted';

export interface FinishRunArgs {
  runId: string;
  state: RunState;
  httpStatus: number | null;
  durationMs: number;
  error?: string | null;
  /** When the first request of the attempt left (null: never sent). */
  sentAt?: Date | null;
  /** When the answer came (default: now). */
  finishedAt?: Date;
}

/** Several outcomes in one statement (the engine batches them). */
export async function finishRuns(db: Queryable, runs: readonly FinishRunArgs[]): Promise<void> {
  if (runs.length === 0) return;
  await db.query(
    `UPDATE pipeline_step_runs r
        SET state = u.state, http_status = u.http_status, duration_ms = u.duration_ms, error = u.error,
            finished_at = u.finished_at, sent_at = COALESCE(u.sent_at, r.sent_at)
       FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[], $5::text[], $6::timestamptz[], $7::timestamptz[])
            AS u(run_id, state, http_status, duration_ms, error, finished_at, sent_at)
      WHERE r.run_id = u.run_id AND ${NO_FLUSH_WAIT}`,
    [
      runs.map((a) => a.runId),
      runs.map((a) => a.state),
      runs.map((a) => a.httpStatus),
      runs.map((a) => Math.round(a.durationMs)),
      runs.map((a) => (a.error ? a.error.slice(0, 4000) : null)),
      runs.map((a) => a.finishedAt ?? new Date()),
      runs.map((a) => a.sentAt ?? null),
    ],
  );
}

/**
 * Buffers run outcomes and writes them in one statement per `flushMs` (or
 * per `maxBatch` outcomes): the run log is bookkeeping, so one round trip per
 * step for it is not worth paying. A batch that fails to write (the database
 * away for a moment) is kept and tried again after `retryMs`, up to
 * `maxPending` outcomes; beyond that, or on the final flush, it is reported
 * through `onError` and dropped (the state machine's truth is in the subject
 * rows, not here).
 */
export class RunLogWriter {
  private buffer: FinishRunArgs[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private readonly retryMs: number;
  private readonly maxPending: number;

  constructor(
    private readonly db: Queryable,
    private readonly o: {
      flushMs: number;
      maxBatch: number;
      onError: (err: unknown, lost: number) => void;
      retryMs?: number;
      maxPending?: number;
    },
  ) {
    this.retryMs = o.retryMs ?? 1_000;
    this.maxPending = o.maxPending ?? 10_000;
  }

  add(run: FinishRunArgs): void {
    this.buffer.push({ ...run, finishedAt: run.finishedAt ?? new Date() });
    if (this.buffer.length >= this.o.maxBatch) void this.flush();
    else this.schedule(this.o.flushMs);
  }

  get pending(): number {
    return this.buffer.length;
  }

  private schedule(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, ms);
  }

  /**
   * Writes everything buffered so far; resolves when it is written, kept for a
   * retry, or (with `final`, or past `maxPending`) reported and dropped.
   */
  flush(opts: { final?: boolean } = {}): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.buffer;
    this.buffer = [];
    const write = this.flushing.then(async () => {
      if (batch.length === 0) return;
      try {
        await finishRuns(this.db, batch);
      } catch (err) {
        if (opts.final || batch.length + this.buffer.length > this.maxPending) {
          this.o.onError(err, batch.length);
          return;
        }
        this.buffer = [...batch, ...this.buffer];
        this.schedule(this.retryMs);
      }
    });
    this.flushing = write;
    return write;
  }
}

export interface StepRunRow {
  run_id: string;
  job_id: string;
  job_variants_id: string | null;
  step: string;
  attempt: number;
  attempt_base: number | null;
  trigger: string;
  state: string;
  instance_id: string;
  claimed_at: Date;
  sent_at: Date | null;
  finished_at: Date | null;
  http_status: number | null;
  duration_ms: number | null;
  error: string | null;
}

/** Every dispatch of a job (variants included), oldest first. */
export async function listStepRuns(db: Queryable, jobId: string): Promise<StepRunRow[]> {
  const { rows } = await db.query<StepRunRow>(
    `SELECT run_id::text, job_id::text, job_variants_id::text, step, attempt, attempt_base, trigger, state,
            instance_id, claimed_at, sent_at, finished_at, http_status, duration_ms, error
       FROM pipeline_step_runs WHERE job_id = $1 ORDER BY claimed_at, run_id`,
    [jobId],
  );
  return rows;
}

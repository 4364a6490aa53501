/**
 * The stage server's own timing of each stage run (table stage_run_timings,
 * migration 0005; docs/stage-api.md, "Admission"): the admission wait and the
 * work, per (step, subject, attempt). Written in the finish's transaction
 * when the run is done, on its own after a failure.
 */
import type { Queryable, Step } from '@feedlyai/pipeline-core';
import type { Resource } from '../config.js';

export interface RunTiming {
  step: Step;
  jobId: string;
  jobVariantsId: string | null;
  attempt: number;
  outcome: 'done' | 'failed' | 'superseded';
  resources: readonly Resource[];
  /** Epoch ms: the request arrived. */
  receivedAt: number;
  /** Epoch ms: the resources were held and this subject's turn began. */
  admittedAt: number;
  /** Admission wait (and, for a request covering several variants, the turns of those before it), ms. */
  waitMs: number;
  /** From the turn's beginning to the finish (the finish's own write excluded), ms. */
  workMs: number;
}

export async function insertRunTiming(db: Queryable, t: RunTiming): Promise<void> {
  await db.query(
    `INSERT INTO stage_run_timings (job_id, job_variants_id, step, attempt, outcome, resources, received_at,
       admitted_at, wait_ms, work_ms)
     VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7 / 1000.0), to_timestamp($8 / 1000.0), $9, $10)`,
    [
      t.jobId,
      t.jobVariantsId,
      t.step,
      t.attempt,
      t.outcome,
      [...t.resources],
      t.receivedAt,
      t.admittedAt,
      Math.round(t.waitMs),
      Math.round(t.workMs),
    ],
  );
}

/**
 * Stage set, 2 (was pipeline-core's 0005 before the sets were split,
 * docs/migrations.md): the stage server's own timing of each stage run (docs/stage-api.md,
 * "Admission"): how long the request waited for its model or CPU resources
 * (`wait_ms`, the admission queue) and how long the work took once they were
 * held (`work_ms`, from the start to the finish). One row per run that
 * started, written in the finish's transaction when it is done. The demo and
 * the burst measurement read it; nothing in the state machine does.
 *
 * Additive and idempotent (IF NOT EXISTS): on a database migrated before
 * the split the table is already there, and this only records the id.
 */
export const name = 'stage_run_timings';

export const sql = /* sql */ `
CREATE TABLE IF NOT EXISTS stage_run_timings (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL,
  job_variants_id uuid,
  step text NOT NULL,
  attempt integer NOT NULL,
  outcome text NOT NULL,
  resources text[] NOT NULL DEFAULT '{}',
  received_at timestamptz NOT NULL,
  admitted_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now(),
  wait_ms integer NOT NULL,
  work_ms integer NOT NULL
);
CREATE INDEX IF NOT EXISTS stage_run_timings_job_idx ON stage_run_timings (job_id, step);
`;

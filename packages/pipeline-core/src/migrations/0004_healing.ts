/**
 * 0004: healing by knowing instead of waiting (docs/healing.md).
 *
 * - `claimed_by` on both subject tables: the instance whose claim wrote the
 *   row's current attempt. Set by every claim UPDATE itself.
 * - `pipeline_instances`: every listener instance registers the backend pid
 *   of its LISTEN connection on each (re)connect. A peer that sees that pid
 *   gone from pg_stat_activity stamps `lost_at` (database clock); an instance
 *   lost for longer than `deadAfterMs` is dead and its `queued` rows are
 *   re-dispatched by a live peer.
 * - `start_token` on both: written by the stage's start, read back after a
 *   start or finish whose commit answer was lost (docs/stage-api.md).
 * - `failed_at` on jobs: when the job failed for good (give-up, rejection,
 *   cancel), stamped by a trigger so that every writer keeps it honest.
 *   `feedly-pipeline retry --failed-since` reads it.
 * - pipeline_step_runs gets `sent_at` (when the stage call left) and
 *   `attempt_base` (the uncounted attempts at claim time), so the run log
 *   shows claimed, sent and finished times and which attempts counted.
 * - The recovery scan's index walks (updated_at, job_variants_id) in keyset
 *   pages and leaves out the rows no sweep acts on: `user_img_input` in any
 *   status and `img_gen` unless done (parked upstream), and finished variants.
 *   It replaces jobs_variants_actionable_idx of 0001.
 * - `queued` rows at a step with a stage route are found by claimer, for the
 *   re-send of an instance's own rows and the re-dispatch of a dead one's.
 *
 * Additive and idempotent, like the others.
 */
export const name = 'healing';

export const sql = /* sql */ `
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS claimed_by text;
ALTER TABLE jobs_variants ADD COLUMN IF NOT EXISTS claimed_by text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS failed_at timestamptz;
-- start_token: a random token the stage writes with its start, so that after a start whose commit
-- answer was lost it can tell its own start from anyone else's (docs/stage-api.md).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS start_token text;
ALTER TABLE jobs_variants ADD COLUMN IF NOT EXISTS start_token text;

UPDATE jobs SET failed_at = updated_at WHERE failure_reason IS NOT NULL AND failed_at IS NULL;

CREATE OR REPLACE FUNCTION feedly_stamp_failed_at() RETURNS trigger AS $$
BEGIN
  IF NEW.failure_reason IS NULL THEN
    NEW.failed_at := NULL;
  ELSIF TG_OP = 'INSERT' OR OLD.failure_reason IS NULL THEN
    NEW.failed_at := now();
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS jobs_stamp_failed_at ON jobs;
CREATE TRIGGER jobs_stamp_failed_at
  BEFORE INSERT OR UPDATE OF failure_reason ON jobs
  FOR EACH ROW EXECUTE FUNCTION feedly_stamp_failed_at();

CREATE INDEX IF NOT EXISTS jobs_failed_at_idx ON jobs (failed_at) WHERE failure_reason IS NOT NULL;

CREATE TABLE IF NOT EXISTS pipeline_instances (
  instance_id text PRIMARY KEY,
  listener_pid integer,
  host text,
  pid integer,
  started_at timestamptz NOT NULL DEFAULT now(),
  registered_at timestamptz NOT NULL DEFAULT now(),
  lost_at timestamptz
);

ALTER TABLE pipeline_step_runs ADD COLUMN IF NOT EXISTS sent_at timestamptz;
ALTER TABLE pipeline_step_runs ADD COLUMN IF NOT EXISTS attempt_base integer;

CREATE INDEX IF NOT EXISTS jobs_variants_recovery_idx ON jobs_variants (updated_at, job_variants_id)
  WHERE NOT (current_step = 'iou_eval' AND status = 'done')
    AND current_step <> 'user_img_input'
    AND (current_step <> 'img_gen' OR status = 'done');
DROP INDEX IF EXISTS jobs_variants_actionable_idx;

CREATE INDEX IF NOT EXISTS jobs_variants_queued_claimer_idx ON jobs_variants (claimed_by)
  WHERE status = 'queued' AND current_step NOT IN ('user_img_input', 'img_gen');
CREATE INDEX IF NOT EXISTS jobs_queued_claimer_idx ON jobs (claimed_by)
  WHERE status = 'queued' AND current_step IN ('ad_copy_gen_kor', 'instagram_feed_gen');

-- The job-level recovery scan: only jobs in the job-level phase that are not finished.
CREATE INDEX IF NOT EXISTS jobs_job_phase_recovery_idx ON jobs (updated_at, job_id)
  WHERE failure_reason IS NULL AND current_step IN ('ad_copy_gen_kor', 'instagram_feed_gen')
    AND NOT (current_step = 'instagram_feed_gen' AND status = 'done');
`;

/**
 * 0001: the seed's tables, columns and triggers, plus the pipeline's own
 * columns, run log and the partial indexes that keep recovery an index scan.
 *
 * Everything is additive (IF NOT EXISTS / ADD COLUMN IF NOT EXISTS / CREATE OR
 * REPLACE FUNCTION), so it also runs against the existing API server's
 * database, which already has jobs, jobs_variants, job_inputs and image_assets.
 */
export const name = 'core';

export const sql = /* sql */ `
CREATE TABLE IF NOT EXISTS tone_styles (
  tone_style_id uuid PRIMARY KEY DEFAULT gen_random_uuid()
);
ALTER TABLE tone_styles ADD COLUMN IF NOT EXISTS code text;
ALTER TABLE tone_styles ADD COLUMN IF NOT EXISTS name text;
ALTER TABLE tone_styles ADD COLUMN IF NOT EXISTS name_kor text;
ALTER TABLE tone_styles ADD COLUMN IF NOT EXISTS description text;
ALTER TABLE tone_styles ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS tone_styles_code_key ON tone_styles (code);
INSERT INTO tone_styles (code, name, name_kor, description) VALUES
  ('friendly', 'Friendly', '친근한', 'warm, conversational, approachable'),
  ('premium', 'Premium', '고급스러운', 'refined, understated, confident'),
  ('playful', 'Playful', '발랄한', 'light, witty, energetic'),
  ('minimal', 'Minimal', '담백한', 'short, plain, no exclamation marks'),
  ('bold', 'Bold', '강렬한', 'direct, punchy, high energy')
ON CONFLICT (code) DO NOTHING;

CREATE TABLE IF NOT EXISTS image_assets (
  image_asset_id uuid PRIMARY KEY DEFAULT gen_random_uuid()
);
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS image_type text NOT NULL DEFAULT 'upload';
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS image_url text;
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS tenant_id text;
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS mime_type text;
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS width integer;
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS height integer;
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS byte_size integer;
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS sha256 text;
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE IF NOT EXISTS jobs (
  job_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id text NOT NULL,
  status text NOT NULL DEFAULT 'queued',
  current_step text NOT NULL DEFAULT 'user_img_input',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- attempt: the fencing token of the current step (docs/state-machine.md).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 1;
-- attempt_base: attempts before the last manual retry (the limit counts from here).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS attempt_base integer NOT NULL DEFAULT 0;
-- last_error: the error of the current step when it failed (retryable).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS last_error text;
-- failure_reason: set when the job failed for good (given up, cancelled). Terminal.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS failure_reason text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS completed_at timestamptz;

CREATE TABLE IF NOT EXISTS jobs_variants (
  job_variants_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  img_asset_id uuid REFERENCES image_assets (image_asset_id),
  creation_order integer NOT NULL DEFAULT 1,
  status text NOT NULL DEFAULT 'queued',
  current_step text NOT NULL DEFAULT 'user_img_input',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE jobs_variants ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 1;
ALTER TABLE jobs_variants ADD COLUMN IF NOT EXISTS attempt_base integer NOT NULL DEFAULT 0;
ALTER TABLE jobs_variants ADD COLUMN IF NOT EXISTS last_error text;
-- given_up_at: the variant failed at its attempt limit (fan-in policy 'any' skips it).
ALTER TABLE jobs_variants ADD COLUMN IF NOT EXISTS given_up_at timestamptz;

CREATE TABLE IF NOT EXISTS job_inputs (
  job_input_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  img_asset_id uuid REFERENCES image_assets (image_asset_id),
  desc_kor text,
  tone_style_id uuid REFERENCES tone_styles (tone_style_id)
);
ALTER TABLE job_inputs ADD COLUMN IF NOT EXISTS product_name text;
-- Optional English ad copy (headline) and Korean tagline given by the tenant.
ALTER TABLE job_inputs ADD COLUMN IF NOT EXISTS ad_copy_eng text;
ALTER TABLE job_inputs ADD COLUMN IF NOT EXISTS tagline_kor text;
ALTER TABLE job_inputs ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX IF NOT EXISTS jobs_variants_job_id_idx ON jobs_variants (job_id);
CREATE INDEX IF NOT EXISTS job_inputs_job_id_idx ON job_inputs (job_id);
CREATE INDEX IF NOT EXISTS jobs_tenant_created_idx ON jobs (tenant_id, created_at DESC);

-- Recovery: only rows that can still need a transition are indexed. A variant
-- at ('iou_eval','done') is finished from the variant point of view, a job at
-- ('instagram_feed_gen','done') or failed for good is finished. A recovery
-- sweep is a range scan over the recovery window of these partial indexes, so
-- millions of finished rows cost nothing.
CREATE INDEX IF NOT EXISTS jobs_variants_actionable_idx ON jobs_variants (updated_at)
  WHERE NOT (current_step = 'iou_eval' AND status = 'done');
CREATE INDEX IF NOT EXISTS jobs_active_idx ON jobs (updated_at)
  WHERE failure_reason IS NULL AND NOT (current_step = 'instagram_feed_gen' AND status = 'done');
-- Fan-in candidates: jobs still in the variant phase.
CREATE INDEX IF NOT EXISTS jobs_variant_phase_idx ON jobs (job_id)
  WHERE failure_reason IS NULL AND current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen');

-- Keep updated_at honest: every change of the state columns stamps it, so the
-- rescue timeout and the recovery window do not depend on every writer
-- remembering to set it.
CREATE OR REPLACE FUNCTION feedly_touch_state_updated_at() RETURNS trigger AS $$
BEGIN
  IF NEW.current_step IS DISTINCT FROM OLD.current_step
     OR NEW.status IS DISTINCT FROM OLD.status
     OR NEW.attempt IS DISTINCT FROM OLD.attempt THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS jobs_variants_touch_updated_at ON jobs_variants;
CREATE TRIGGER jobs_variants_touch_updated_at
  BEFORE UPDATE ON jobs_variants
  FOR EACH ROW EXECUTE FUNCTION feedly_touch_state_updated_at();

DROP TRIGGER IF EXISTS jobs_touch_updated_at ON jobs;
CREATE TRIGGER jobs_touch_updated_at
  BEFORE UPDATE ON jobs
  FOR EACH ROW EXECUTE FUNCTION feedly_touch_state_updated_at();

-- The seed's variant trigger (names and payload: docs/state-machine.md), with
-- the attempt added to the payload.
CREATE OR REPLACE FUNCTION notify_job_variant_state_change() RETURNS trigger AS $$
BEGIN
  IF (OLD.current_step IS DISTINCT FROM NEW.current_step
      OR OLD.status IS DISTINCT FROM NEW.status) THEN
    PERFORM pg_notify('job_variant_state_changed',
      json_build_object(
        'job_variants_id', NEW.job_variants_id::text,
        'job_id', NEW.job_id::text,
        'current_step', NEW.current_step,
        'status', NEW.status,
        'img_asset_id', NEW.img_asset_id::text,
        'tenant_id', (SELECT tenant_id FROM jobs WHERE job_id = NEW.job_id),
        'updated_at', NEW.updated_at,
        'attempt', NEW.attempt
      )::text);
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS job_variant_state_change_trigger ON jobs_variants;
CREATE TRIGGER job_variant_state_change_trigger
  AFTER UPDATE ON jobs_variants
  FOR EACH ROW EXECUTE FUNCTION notify_job_variant_state_change();

CREATE OR REPLACE FUNCTION notify_job_state_change() RETURNS trigger AS $$
BEGIN
  IF (OLD.current_step IS DISTINCT FROM NEW.current_step
      OR OLD.status IS DISTINCT FROM NEW.status) THEN
    PERFORM pg_notify('job_state_changed',
      json_build_object(
        'job_id', NEW.job_id::text,
        'tenant_id', NEW.tenant_id,
        'current_step', NEW.current_step,
        'status', NEW.status,
        'updated_at', NEW.updated_at,
        'attempt', NEW.attempt
      )::text);
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS job_state_change_trigger ON jobs;
CREATE TRIGGER job_state_change_trigger
  AFTER UPDATE ON jobs
  FOR EACH ROW EXECUTE FUNCTION notify_job_state_change();

-- Every dispatch the pipeline made: who claimed which attempt of which step,
-- why (notify, recovery, retry, rescue, fan_in, manual) and how it ended.
-- Not unique on (subject, step): a legitimate re-run is a new row.
CREATE TABLE IF NOT EXISTS pipeline_step_runs (
  run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL,
  job_variants_id uuid,
  step text NOT NULL,
  attempt integer NOT NULL,
  trigger text NOT NULL,
  state text NOT NULL DEFAULT 'dispatched',
  instance_id text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  http_status integer,
  duration_ms integer,
  error text
);
CREATE INDEX IF NOT EXISTS pipeline_step_runs_job_idx ON pipeline_step_runs (job_id, claimed_at);
`;

/**
 * Stage set, 1 (was pipeline-core's 0002 before the sets were split,
 * docs/migrations.md): the stage server's result tables.
 *
 * Every result row names the subject (job_id, job_variants_id for variant
 * steps), the `attempt` of the step that produced it and the `method` that
 * produced it (vlm, heuristic, yolo, saliency, measured, tesseract, llm,
 * template, input). Rows are inserted in the same transaction as the stage's
 * finish, so a row exists only for an attempt that reached `done`. A step can
 * legitimately be re-run (manual retry, operator reset), so readers take the
 * newest row per subject (ORDER BY created_at DESC, id DESC).
 *
 * Output images (overlay, planner preview, Instagram feed) are also
 * registered as image_assets rows (image_type 'overlay' / 'planner_preview' /
 * 'instagram_feed'), so GET /assets/:id serves them.
 *
 * Additive and idempotent (IF NOT EXISTS everywhere): on a database migrated
 * before the split every table is already there, and this only records the id.
 */
export const name = 'stage_results';

export const sql = /* sql */ `
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS job_id uuid;
ALTER TABLE image_assets ADD COLUMN IF NOT EXISTS job_variants_id uuid;

-- vlm_analyze: is the product photo usable, what it shows, its colours and problems.
CREATE TABLE IF NOT EXISTS stage_vlm_analyses (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  model text,
  usable boolean NOT NULL,
  description text NOT NULL,
  dominant_colors jsonb NOT NULL DEFAULT '[]',
  problems jsonb NOT NULL DEFAULT '[]',
  metrics jsonb,
  duration_ms integer,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_vlm_analyses_variant_idx ON stage_vlm_analyses (job_variants_id, created_at);
CREATE INDEX IF NOT EXISTS stage_vlm_analyses_job_idx ON stage_vlm_analyses (job_id);

-- yolo_detect: one row per run; detections = [{label, classId, score, box:{x,y,w,h}}] in image pixels.
CREATE TABLE IF NOT EXISTS stage_detections (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  model text,
  image_width integer NOT NULL,
  image_height integer NOT NULL,
  detections jsonb NOT NULL DEFAULT '[]',
  detection_count integer NOT NULL DEFAULT 0,
  duration_ms integer,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_detections_variant_idx ON stage_detections (job_variants_id, created_at);
CREATE INDEX IF NOT EXISTS stage_detections_job_idx ON stage_detections (job_id);

-- planner: every proposal of a run (valid or rejected), its score and components, and which was chosen.
CREATE TABLE IF NOT EXISTS stage_planner_proposals (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  rank integer NOT NULL,
  region jsonb NOT NULL,
  lines jsonb NOT NULL DEFAULT '[]',
  score double precision NOT NULL,
  components jsonb NOT NULL DEFAULT '{}',
  rejected_reason text,
  chosen boolean NOT NULL DEFAULT false,
  preview_asset_id uuid REFERENCES image_assets (image_asset_id),
  preview_image_key text,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- anchor: where the block sits (top-left, band-bottom, ...); proposal: the whole proposal as the planner
-- produced it (canvas extension for caption bands included), which the overlay renders.
ALTER TABLE stage_planner_proposals ADD COLUMN IF NOT EXISTS anchor text;
ALTER TABLE stage_planner_proposals ADD COLUMN IF NOT EXISTS proposal jsonb;
CREATE INDEX IF NOT EXISTS stage_planner_proposals_variant_idx ON stage_planner_proposals (job_variants_id, created_at);
CREATE INDEX IF NOT EXISTS stage_planner_proposals_job_idx ON stage_planner_proposals (job_id);

-- overlay: the rendered creative (layout: boxes, text, colours, font sizes) and its image.
CREATE TABLE IF NOT EXISTS stage_overlays (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  headline text NOT NULL,
  tagline text,
  texts jsonb NOT NULL,
  treatment jsonb NOT NULL,
  layout jsonb NOT NULL,
  proposal_rank integer,
  image_key text NOT NULL,
  image_asset_id uuid REFERENCES image_assets (image_asset_id),
  width integer NOT NULL,
  height integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_overlays_variant_idx ON stage_overlays (job_variants_id, created_at);
CREATE INDEX IF NOT EXISTS stage_overlays_job_idx ON stage_overlays (job_id);

-- vlm_judge: score 0..10 of the finished creative, problems, rationale.
CREATE TABLE IF NOT EXISTS stage_vlm_judgements (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  model text,
  score double precision NOT NULL,
  problems jsonb NOT NULL DEFAULT '[]',
  rationale text NOT NULL DEFAULT '',
  overlay_id bigint,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_vlm_judgements_variant_idx ON stage_vlm_judgements (job_variants_id, created_at);
CREATE INDEX IF NOT EXISTS stage_vlm_judgements_job_idx ON stage_vlm_judgements (job_id);

-- ocr_eval: one row per rendered text line.
CREATE TABLE IF NOT EXISTS stage_ocr_evals (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  role text NOT NULL,
  lang text NOT NULL,
  expected text NOT NULL,
  read text NOT NULL,
  cer double precision NOT NULL,
  confidence double precision NOT NULL,
  overlay_id bigint,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_ocr_evals_variant_idx ON stage_ocr_evals (job_variants_id, created_at);
CREATE INDEX IF NOT EXISTS stage_ocr_evals_job_idx ON stage_ocr_evals (job_id);

-- readability_eval: one row per run; lines = [{role, contrastP5, contrastMedian, clutter, pass}].
CREATE TABLE IF NOT EXISTS stage_readability_evals (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  lines jsonb NOT NULL DEFAULT '[]',
  min_contrast double precision,
  max_clutter double precision,
  thresholds jsonb NOT NULL,
  pass boolean NOT NULL,
  overlay_id bigint,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_readability_evals_variant_idx ON stage_readability_evals (job_variants_id, created_at);
CREATE INDEX IF NOT EXISTS stage_readability_evals_job_idx ON stage_readability_evals (job_id);

-- iou_eval: every text box against every detected object, and the maxima.
CREATE TABLE IF NOT EXISTS stage_iou_evals (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  pairs jsonb NOT NULL DEFAULT '[]',
  max_iou double precision NOT NULL,
  max_io_text double precision NOT NULL,
  overlay_id bigint,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_iou_evals_variant_idx ON stage_iou_evals (job_variants_id, created_at);
CREATE INDEX IF NOT EXISTS stage_iou_evals_job_idx ON stage_iou_evals (job_id);

-- The job's ad copy. The English headline is decided once per job (the first
-- overlay inserts it with ON CONFLICT DO NOTHING; every variant reads it back),
-- the Korean copy is written by ad_copy_gen_kor.
CREATE TABLE IF NOT EXISTS job_ad_copies (
  job_id uuid PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
  headline_eng text NOT NULL,
  eng_method text NOT NULL,
  eng_model text,
  tagline_kor text,
  ad_copy_kor text,
  kor_method text,
  kor_model text,
  kor_attempt integer,
  kor_created_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- instagram_feed_gen: the chosen variant, the score table, caption, hashtags and the feed image.
CREATE TABLE IF NOT EXISTS stage_instagram_feeds (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
  attempt integer NOT NULL,
  method text NOT NULL,
  model text,
  chosen_variant_id uuid REFERENCES jobs_variants (job_variants_id) ON DELETE SET NULL,
  scores jsonb NOT NULL DEFAULT '[]',
  caption text NOT NULL,
  hashtags jsonb NOT NULL DEFAULT '[]',
  feed_image_key text NOT NULL,
  feed_asset_id uuid REFERENCES image_assets (image_asset_id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_instagram_feeds_job_idx ON stage_instagram_feeds (job_id, created_at);
`;

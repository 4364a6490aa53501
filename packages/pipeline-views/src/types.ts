/**
 * The view model of a pipeline job and its variants: what the monitor, the
 * analyzer and the dashboard show, read from the engine's tables
 * (`jobs`, `jobs_variants`, `job_inputs`, `pipeline_step_runs`) and the stage
 * server's result tables (two migration sets, docs/migrations.md).
 *
 * Every timestamp is an ISO 8601 string; every duration is in milliseconds.
 * Image fields come in pairs: the storage key as stored (`...Key`, relative
 * to `STORAGE_DIR` or an `http(s)` URL) and its path on this machine
 * (`...Path`, the URL unchanged).
 */

/** A rectangle in image pixels. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * One dispatch of a step, from the run log `pipeline_step_runs`
 * (docs/state-machine.md, "The run log").
 */
export interface StepRun {
  step: string;
  attempt: number;
  /** Why it was dispatched: notify, recovery, retry, rescue, fan_in, manual, redispatch. */
  trigger: string;
  /** dispatched, sent, done, failed, ... (docs/state-machine.md). */
  state: string;
  /** The instance that claimed it (`PIPELINE_INSTANCE_ID`). */
  instanceId: string;
  claimedAt: string;
  /** When the stage request of the attempt left (null: not sent yet, or never). Set by the readers. */
  sentAt?: string | null;
  finishedAt: string | null;
  /** Finished minus claimed, or the database's now minus claimed while the run is open. */
  elapsedMs: number;
  /** The dispatcher's recorded duration, else finished minus claimed; null while open. */
  durationMs: number | null;
  /** True while the run has not finished. */
  open: boolean;
  /** The stage's HTTP status, when it answered. */
  httpStatus: number | null;
  error: string | null;
}

/**
 * The stage server's own timing of a stage run, from `stage_run_timings`
 * (docs/stage-api.md, "Admission"): the wait for its model or CPU resources
 * and the work once they were held.
 */
export interface StageTiming {
  step: string;
  attempt: number;
  /** done, failed, ... */
  outcome: string;
  waitMs: number;
  workMs: number;
  finishedAt: string;
}

/** vlm_analyze: is the photo usable, what it shows. */
export interface VlmAnalysis {
  method: string;
  model: string | null;
  usable: boolean;
  description: string;
  dominantColors: string[];
  problems: string[];
}

/** yolo_detect: the objects found in the photo. */
export interface Detections {
  method: string;
  model: string | null;
  count: number;
  items: Array<{ label: string; score: number; box: Box }>;
}

/** One placement the planner proposed for the ad text. */
export interface PlannerProposal {
  rank: number;
  score: number;
  /** The score's parts (coverage, contrast, ...), each as the planner computed it. */
  components: Record<string, number>;
  /** Why the proposal was rejected, or null when it was valid. */
  rejected: string | null;
  chosen: boolean;
  region: Box;
}

/** planner: every proposal of the latest run, best rank first. */
export interface PlannerResult {
  method: string;
  proposals: PlannerProposal[];
  chosenRank: number | null;
  /** The chosen proposal's preview image. */
  previewKey: string | null;
  previewPath: string | null;
  /** Its image_assets id (what GET /assets/:id serves). Set by the readers. */
  previewAssetId?: string | null;
}

/** overlay: the rendered creative and its layout. */
export interface OverlayResult {
  method: string;
  headline: string;
  tagline: string | null;
  treatment: unknown;
  lines: Array<{ role: string; text: string; box: Box; fontSize: number; color: string }>;
  proposalRank: number | null;
  imageKey: string;
  imagePath: string;
  /** The creative's image_assets id (what GET /assets/:id serves). Set by the readers. */
  imageAssetId?: string | null;
  width: number;
  height: number;
}

/** The four evaluations of a creative; each null until its step is done. */
export interface Evaluations {
  ocr: {
    method: string;
    lines: Array<{ role: string; lang: string; expected: string; read: string; cer: number; confidence: number }>;
    /** Mean character error rate over the lines. */
    meanCer: number;
  } | null;
  readability: {
    method: string;
    pass: boolean;
    minContrast: number | null;
    maxClutter: number | null;
    thresholds: unknown;
    lines: Array<{ role: string; contrastP5: number; contrastMedian: number; clutter: number; pass: boolean }>;
  } | null;
  iou: { method: string; maxIou: number; maxIoText: number; pairs: unknown[] } | null;
  judge: { method: string; model: string | null; score: number; problems: string[]; rationale: string } | null;
}

/** The headline numbers of a variant's evaluations, null where not evaluated yet. */
export interface VariantScores {
  /** VLM judge, 0 to 10. */
  judge: number | null;
  /** Mean OCR character error rate, 0 (perfect) and up. */
  ocrMeanCer: number | null;
  readabilityPass: boolean | null;
  minContrast: number | null;
  /** Largest overlap of a text box with a detected object. */
  maxIou: number | null;
}

/** A variant: its state, its stage results, its scores and its timings. */
export interface VariantView {
  id: string;
  jobId: string;
  /** creation_order, from 1. */
  order: number;
  /** current_step / status / attempt of the row (docs/state-machine.md). */
  step: string;
  status: string;
  attempt: number;
  lastError: string | null;
  /** The engine gave the variant up (its step failed at the attempt limit). */
  givenUp: boolean;
  updatedAt: string;
  /** Steps done out of the 10 automatic steps, the job-level ones counted once the job reaches them. */
  progress: number;
  /** This variant's creative was chosen for the Instagram feed. */
  chosen: boolean;
  vlmAnalysis: VlmAnalysis | null;
  detections: Detections | null;
  planner: PlannerResult | null;
  overlay: OverlayResult | null;
  evaluations: Evaluations;
  scores: VariantScores;
  /** The latest run of each step, in step order. */
  timings: StepRun[];
  /** Every run of the run log, oldest first: the attempts' timeline. */
  runs: StepRun[];
  /** The stage server's timing of the latest run of each step, in step order. */
  stageTimings: StageTiming[];
}

/** What the job was created with (job_inputs). */
export interface JobInputs {
  descKor: string | null;
  tone: string | null;
  adCopyEng: string | null;
  taglineKor: string | null;
  productName: string | null;
  /** The product photo's image_assets.image_url. */
  imageKey: string | null;
  /** The product photo's image_assets id. Set by the readers. */
  imageAssetId?: string | null;
}

/** ad_copy_gen_kor (and the English headline the first overlay decided). */
export interface AdCopy {
  headlineEng: string;
  engMethod: string;
  taglineKor: string | null;
  adCopyKor: string | null;
  korMethod: string | null;
  korModel: string | null;
}

/** instagram_feed_gen: the post built from the chosen variant. */
export interface Feed {
  method: string;
  model: string | null;
  caption: string;
  hashtags: string[];
  chosenVariantId: string | null;
  /** The score table the choice was made on, as the stage stored it. */
  scores: unknown;
  feedImageKey: string;
  feedImagePath: string;
  /** The feed image's image_assets id. Set by the readers. */
  feedAssetId?: string | null;
}

/** A job with its variants. */
export interface JobView {
  id: string;
  tenantId: string;
  step: string;
  status: string;
  attempt: number;
  lastError: string | null;
  /** Set when the job failed for good (given up, cancelled). */
  failureReason: string | null;
  createdAt: string;
  updatedAt: string;
  completedAt: string | null;
  /** At instagram_feed_gen / done. */
  done: boolean;
  /** 'done', 'failed' (failed for good), or null while it can still move. */
  outcome: 'done' | 'failed' | null;
  /** Steps done out of 10: the variants' mean, then 8 plus the job-level steps done. */
  progress: number;
  /** Created to completed, or to the database's now while running. */
  elapsedMs: number;
  /** Created to completed; null until completed. */
  durationMs: number | null;
  inputs: JobInputs | null;
  variants: VariantView[];
  adCopy: AdCopy | null;
  feed: Feed | null;
  /** The latest run of each job-level step. */
  timings: StepRun[];
  /** Every run of the job-level steps, oldest first. */
  runs: StepRun[];
  /** The stage server's timing of the latest run of each job-level step. */
  stageTimings: StageTiming[];
  /** The database's clock when the view was read. */
  readAt: string;
}

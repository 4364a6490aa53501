/**
 * The step graph as data. This module is the vocabulary of the pipeline: it
 * imports no database or network code, so it can be used anywhere (CLI,
 * stage server, tests, documentation generators).
 */

export const STEPS = [
  'user_img_input',
  'img_gen',
  'vlm_analyze',
  'yolo_detect',
  'planner',
  'overlay',
  'vlm_judge',
  'ocr_eval',
  'readability_eval',
  'iou_eval',
  'ad_copy_gen_kor',
  'instagram_feed_gen',
] as const;

export type Step = (typeof STEPS)[number];

export const STATUSES = ['queued', 'running', 'done', 'failed'] as const;
export type Status = (typeof STATUSES)[number];

export type StepLevel = 'variant' | 'job';

export interface RetryPolicy {
  /** Total attempts allowed (the first run included). */
  maxAttempts: number;
  /** Backoff before attempt n+1 is `min(maxMs, baseMs * 2^(n-1))`, with jitter. */
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export interface StepDefinition {
  name: Step;
  /** The step this one's `done` triggers automatically, or null. */
  next: Step | null;
  /** The step whose `done` makes this one ready, or null. */
  prev: Step | null;
  level: StepLevel;
  /** Stage HTTP route (POST), or null for the steps the pipeline does not run itself. */
  route: string | null;
  /** Human-readable description (used by the CLI and docs). */
  title: string;
  /** How long the dispatcher waits for the synchronous stage answer. */
  timeoutMs: number;
  /**
   * A claimed (`queued`) or `running` step older than this is rescued as a new
   * attempt. Always longer than `timeoutMs` (docs/healing.md §7: the dispatcher's timeout
   * is shorter than the rescue timeout).
   */
  rescueAfterMs: number;
  retry: RetryPolicy;
  /** Calls of this step in flight per instance, at most (undefined: only the instance's total bounds it). */
  maxInFlight?: number | undefined;
}

const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 3, backoffBaseMs: 2_000, backoffMaxMs: 60_000 };

interface StepSeed {
  name: Step;
  level: StepLevel;
  route: string | null;
  title: string;
  timeoutMs: number;
}

const SEEDS: readonly StepSeed[] = [
  { name: 'user_img_input', level: 'variant', route: null, title: 'user image uploaded', timeoutMs: 0 },
  { name: 'img_gen', level: 'variant', route: null, title: 'image generation (YE part)', timeoutMs: 0 },
  {
    name: 'vlm_analyze',
    level: 'variant',
    route: '/api/yh/llava/stage1/validate',
    title: 'VLM analysis (LLaVA stage 1)',
    timeoutMs: 120_000,
  },
  { name: 'yolo_detect', level: 'variant', route: '/api/yh/yolo/detect', title: 'object detection', timeoutMs: 60_000 },
  {
    name: 'planner',
    level: 'variant',
    route: '/api/yh/planner/propose',
    title: 'text placement planner',
    timeoutMs: 60_000,
  },
  {
    name: 'overlay',
    level: 'variant',
    route: '/api/yh/overlay/render',
    title: 'text overlay rendering',
    timeoutMs: 60_000,
  },
  {
    name: 'vlm_judge',
    level: 'variant',
    route: '/api/yh/llava/stage2/judge',
    title: 'VLM judgement (LLaVA stage 2)',
    timeoutMs: 120_000,
  },
  { name: 'ocr_eval', level: 'variant', route: '/api/yh/evals/ocr', title: 'OCR evaluation', timeoutMs: 120_000 },
  {
    name: 'readability_eval',
    level: 'variant',
    route: '/api/yh/evals/readability',
    title: 'readability evaluation',
    timeoutMs: 60_000,
  },
  {
    name: 'iou_eval',
    level: 'variant',
    route: '/api/yh/evals/iou',
    title: 'text/object IoU evaluation',
    timeoutMs: 30_000,
  },
  {
    name: 'ad_copy_gen_kor',
    level: 'job',
    route: '/api/yh/gpt/ad-copy-kor',
    title: 'Korean ad copy',
    timeoutMs: 120_000,
  },
  {
    name: 'instagram_feed_gen',
    level: 'job',
    route: '/api/yh/instagram/feed',
    title: 'Instagram feed post',
    timeoutMs: 120_000,
  },
];

function build(): Readonly<Record<Step, StepDefinition>> {
  const out = {} as Record<Step, StepDefinition>;
  SEEDS.forEach((seed, i) => {
    out[seed.name] = Object.freeze({
      ...seed,
      prev: i > 0 ? (SEEDS[i - 1] as StepSeed).name : null,
      next: i + 1 < SEEDS.length ? (SEEDS[i + 1] as StepSeed).name : null,
      rescueAfterMs: seed.route ? seed.timeoutMs + 60_000 : 0,
      retry: DEFAULT_RETRY,
    });
  });
  // user_img_input -> img_gen is the YE part's job, never triggered by us.
  out.user_img_input = Object.freeze({ ...out.user_img_input, next: null });
  out.img_gen = Object.freeze({ ...out.img_gen, prev: null });
  return Object.freeze(out);
}

/** Every step, keyed by name. */
export const STEP_GRAPH: Readonly<Record<Step, StepDefinition>> = build();

/** The ten steps the pipeline runs automatically, in order. */
export const AUTOMATIC_STEPS: readonly Step[] = STEPS.filter((s) => STEP_GRAPH[s].route !== null);

/** Variant-level steps with a stage route, in order (vlm_analyze .. iou_eval). */
export const VARIANT_STEPS: readonly Step[] = AUTOMATIC_STEPS.filter((s) => STEP_GRAPH[s].level === 'variant');

/** Job-level steps, in order (ad_copy_gen_kor, instagram_feed_gen). */
export const JOB_STEPS: readonly Step[] = AUTOMATIC_STEPS.filter((s) => STEP_GRAPH[s].level === 'job');

/** The variant step whose `done` on every variant triggers the fan-in. */
export const FAN_IN_FROM: Step = 'iou_eval';
/** The first job-level step, claimed by the fan-in. */
export const FAN_IN_TO: Step = 'ad_copy_gen_kor';
/** The step whose `done` completes a job. */
export const FINAL_STEP: Step = 'instagram_feed_gen';

export function isStep(value: unknown): value is Step {
  return typeof value === 'string' && (STEPS as readonly string[]).includes(value);
}

export function isStatus(value: unknown): value is Status {
  return typeof value === 'string' && (STATUSES as readonly string[]).includes(value);
}

export function stepDef(step: Step): StepDefinition {
  return STEP_GRAPH[step];
}

/** The step triggered automatically when `step` is done, or null. */
export function nextStep(step: Step): Step | null {
  return STEP_GRAPH[step].next;
}

/** The step whose `done` makes `step` ready, or null. */
export function prevStep(step: Step): Step | null {
  return STEP_GRAPH[step].prev;
}

export function isJobLevel(step: Step): boolean {
  return STEP_GRAPH[step].level === 'job';
}

export function isVariantLevel(step: Step): boolean {
  return STEP_GRAPH[step].level === 'variant';
}

/** Steps the pipeline dispatches itself (they have a stage route). */
export function isAutomatic(step: Step): boolean {
  return STEP_GRAPH[step].route !== null;
}

export function routeOf(step: Step): string {
  const route = STEP_GRAPH[step].route;
  if (!route) throw new Error(`step ${step} has no stage route`);
  return route;
}

/** The step served by a stage route, or undefined. */
export function stepForRoute(route: string): Step | undefined {
  return AUTOMATIC_STEPS.find((s) => STEP_GRAPH[s].route === route);
}

/** 1-based position among the ten automatic steps (0 for user_img_input / img_gen). */
export function progressIndex(step: Step): number {
  return AUTOMATIC_STEPS.indexOf(step) + 1;
}

/**
 * Backoff before the next attempt after attempt `attempt` failed, with full
 * jitter in [50 %, 100 %] of the exponential value so retries never fire all at once.
 */
export function retryBackoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

/** Per-step overrides of timeouts and retry policy (plugin options, tests). */
export type StepPolicyOverrides = Partial<
  Record<
    Step,
    Partial<Pick<StepDefinition, 'timeoutMs' | 'rescueAfterMs' | 'maxInFlight'>> & { retry?: Partial<RetryPolicy> }
  >
>;

/** A step graph with per-step policy overrides applied (validated: rescue > timeout). */
export function withOverrides(overrides: StepPolicyOverrides = {}): Readonly<Record<Step, StepDefinition>> {
  const out = { ...STEP_GRAPH } as Record<Step, StepDefinition>;
  for (const [name, o] of Object.entries(overrides) as [Step, StepPolicyOverrides[Step]][]) {
    if (!isStep(name)) throw new Error(`unknown step in overrides: ${String(name)}`);
    if (!o) continue;
    const base = STEP_GRAPH[name];
    const merged: StepDefinition = {
      ...base,
      timeoutMs: o.timeoutMs ?? base.timeoutMs,
      rescueAfterMs: o.rescueAfterMs ?? base.rescueAfterMs,
      retry: { ...base.retry, ...(o.retry ?? {}) },
      maxInFlight: o.maxInFlight ?? base.maxInFlight,
    };
    if (merged.maxInFlight !== undefined && !(Number.isInteger(merged.maxInFlight) && merged.maxInFlight >= 1)) {
      throw new Error(`step ${name}: maxInFlight must be a positive integer`);
    }
    if (merged.route && merged.rescueAfterMs <= merged.timeoutMs) {
      throw new Error(
        `step ${name}: rescueAfterMs (${merged.rescueAfterMs}) must be longer than timeoutMs (${merged.timeoutMs})`,
      );
    }
    if (merged.retry.maxAttempts < 1) throw new Error(`step ${name}: retry.maxAttempts must be >= 1`);
    out[name] = Object.freeze(merged);
  }
  return Object.freeze(out);
}

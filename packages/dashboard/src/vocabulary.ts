/**
 * What a job's step, progress and status mean on the dashboard
 * (docs/dashboard.md, "What a job's step and status mean"). Pure functions:
 * no database, no Fastify, so the pages, the SQL builders and the tests share
 * one definition.
 *
 * `jobs.current_step` stays `img_gen` through the whole variant phase, so:
 * - a job is at **variant step** S when any of its variants is at S, as long as
 *   it is not done (a done job is past every step, even when fan-in policy
 *   `any` left a given-up variant behind);
 * - a job is at **job step** S when `jobs.current_step = S`;
 * - its **progress** is its least advanced variant's step (in the job-level
 *   phase, the job's own step);
 * - its **status** is done, failed (with the reason) or running.
 */
import { AUTOMATIC_STEPS, FINAL_STEP, isJobLevel, isStep, STEP_GRAPH, STEPS, type Step } from '@feedlyai/pipeline-core';

export const JOB_STATUSES = ['running', 'done', 'failed'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export function isJobStatus(value: unknown): value is JobStatus {
  return typeof value === 'string' && (JOB_STATUSES as readonly string[]).includes(value);
}

/** The row facts a job's status is made of. */
export interface JobStatusFacts {
  current_step: string;
  status: string;
  failure_reason: string | null;
}

/**
 * done: at ('instagram_feed_gen','done'); failed: failed for good (given up,
 * rejected or cancelled: `failure_reason` set); running: anything else,
 * including a step waiting for an automatic retry after a failed attempt.
 */
export function jobStatusOf(j: JobStatusFacts): JobStatus {
  if (j.failure_reason !== null) return 'failed';
  if (j.current_step === FINAL_STEP && j.status === 'done') return 'done';
  return 'running';
}

/** The same definitions in SQL, over a `jobs` row aliased `j` (fixed text, no values). */
export const JOB_STATUS_SQL: Readonly<Record<JobStatus, string>> = {
  done: `(j.failure_reason IS NULL AND j.current_step = 'instagram_feed_gen' AND j.status = 'done')`,
  failed: '(j.failure_reason IS NOT NULL)',
  running: `(j.failure_reason IS NULL AND NOT (j.current_step = 'instagram_feed_gen' AND j.status = 'done'))`,
};

/** Rank of a step in the graph (user_img_input 0 .. instagram_feed_gen 11); unknown steps rank first. */
export function stepRank(step: string): number {
  return isStep(step) ? STEPS.indexOf(step) : -1;
}

/** Among variants at the same step, the one shown as least advanced: a failure first, done last. */
const STATUS_RANK: Record<string, number> = { failed: 0, queued: 1, running: 2, done: 3 };

export interface RowState {
  current_step: string;
  status: string;
}

/**
 * The job's progress: in the job-level phase the job's own step and status,
 * otherwise its least advanced variant's (the job's row when it has none).
 */
export function progressOf(job: RowState, variants: readonly RowState[]): RowState {
  if (isStep(job.current_step) && isJobLevel(job.current_step)) return job;
  if (variants.length === 0) return job;
  return variants.reduce((least, v) => {
    const d = stepRank(v.current_step) - stepRank(least.current_step);
    if (d < 0) return v;
    if (d > 0) return least;
    return (STATUS_RANK[v.status] ?? 0) < (STATUS_RANK[least.status] ?? 0) ? v : least;
  });
}

/** One of the ten automatic steps, as the progress bar shows it. */
export interface ProgressSegment {
  step: Step;
  title: string;
  /** done: passed; current: the progress step (with its status); todo: not reached. */
  state: 'done' | 'current' | 'todo';
  status: string | null;
}

/**
 * The ten-step progress bar of a job at `progress`. Steps before the progress
 * step are done, the progress step carries its status (done counts as
 * passed), the rest are to do. Before vlm_analyze (user_img_input, img_gen)
 * nothing is passed yet.
 */
export function progressSegments(progress: RowState): ProgressSegment[] {
  const at = stepRank(progress.current_step);
  return AUTOMATIC_STEPS.map((step) => {
    const rank = STEPS.indexOf(step);
    const title = STEP_GRAPH[step].title;
    if (rank < at) return { step, title, state: 'done', status: 'done' };
    if (rank === at) {
      return progress.status === 'done'
        ? { step, title, state: 'done', status: 'done' }
        : { step, title, state: 'current', status: progress.status };
    }
    return { step, title, state: 'todo', status: null };
  });
}

/** How many of the ten automatic steps are passed (0..10). */
export function stepsPassed(progress: RowState): number {
  return progressSegments(progress).filter((s) => s.state === 'done').length;
}

/** The step filter's meaning for a step (variant-level: a variant there, the job not done; job-level: the job's row). */
export function stepFilterKind(step: Step): 'variant' | 'job' {
  return isJobLevel(step) ? 'job' : 'variant';
}

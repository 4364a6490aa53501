/**
 * The analyzer's report: the view model of each job (@feedlyai/pipeline-views)
 * plus two fields its JSON has always had, `jobId` and `stepTimings`
 * (docs/cli.md, `analyze`).
 */
import type { JobView, StageTiming, VariantView } from '@feedlyai/pipeline-views';

export type { Box } from '@feedlyai/pipeline-views';

/** A variant as the analyzer reports it: the view model's variant. */
export type AnalyzedVariant = VariantView;

/** The latest run of one step, flat: for `jq` and the demo's table. */
export interface FlatStepTiming {
  /** The variant's creation order; null for the job-level steps. */
  variantOrder: number | null;
  step: string;
  attempt: number;
  durationMs: number | null;
}

export interface AnalyzedJob extends JobView {
  /** The job's id (the same as `id`). */
  jobId: string;
  /** The latest run of each step of each variant, then of the job-level steps. */
  stepTimings: FlatStepTiming[];
}

export interface AnalyzeReport {
  generatedAt: string;
  query: { jobId?: string; tenantId?: string; limit?: number };
  jobs: AnalyzedJob[];
}

export function toAnalyzedJob(view: JobView): AnalyzedJob {
  const stepTimings: FlatStepTiming[] = [
    ...view.variants.flatMap((v) =>
      v.timings.map((r) => ({ variantOrder: v.order, step: r.step, attempt: r.attempt, durationMs: r.durationMs })),
    ),
    ...view.timings.map((r) => ({ variantOrder: null, step: r.step, attempt: r.attempt, durationMs: r.durationMs })),
  ];
  return { ...view, jobId: view.id, stepTimings };
}

/** The stage server's timings of a job, flat (variant creation order; null for the job-level steps). */
export function flatStageTimings(job: JobView): Array<StageTiming & { variantOrder: number | null }> {
  return [
    ...job.variants.flatMap((v) => v.stageTimings.map((t) => ({ ...t, variantOrder: v.order }))),
    ...job.stageTimings.map((t) => ({ ...t, variantOrder: null })),
  ];
}

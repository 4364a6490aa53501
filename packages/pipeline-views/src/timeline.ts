/**
 * A job's timeline (the dashboard's job page, docs/dashboard.md): every dispatch of every
 * step and attempt from the run log, variants and job-level steps together,
 * oldest first, with where each sits on a shared time axis (for the bars).
 */
import type { JobView, StepRun } from './types.js';

export interface TimelineEntry {
  /** The variant's creation order, or null for a job-level step. */
  variantOrder: number | null;
  step: string;
  attempt: number;
  trigger: string;
  state: string;
  instanceId: string;
  claimedAt: string;
  sentAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  httpStatus: number | null;
  error: string | null;
  open: boolean;
  /** The bar: start and width in percent of the axis (claimed to finished, or to now while open). */
  left: number;
  width: number;
}

export interface Timeline {
  entries: TimelineEntry[];
  /** The axis: the first claim to the last finish (or now). */
  startAt: string | null;
  endAt: string | null;
  spanMs: number;
}

export function timelineOf(job: JobView): Timeline {
  const runs: Array<{ order: number | null; run: StepRun }> = [
    ...job.variants.flatMap((v) => v.runs.map((run) => ({ order: v.order as number | null, run }))),
    ...job.runs.map((run) => ({ order: null, run })),
  ];
  runs.sort(
    (a, b) =>
      Date.parse(a.run.claimedAt) - Date.parse(b.run.claimedAt) ||
      (a.order ?? Number.MAX_SAFE_INTEGER) - (b.order ?? Number.MAX_SAFE_INTEGER),
  );
  if (runs.length === 0) return { entries: [], startAt: null, endAt: null, spanMs: 0 };
  const now = Date.parse(job.readAt);
  const start = Math.min(...runs.map((r) => Date.parse(r.run.claimedAt)));
  const end = Math.max(...runs.map((r) => (r.run.finishedAt ? Date.parse(r.run.finishedAt) : now)));
  const span = Math.max(1, end - start);
  const entries = runs.map(({ order, run }): TimelineEntry => {
    const from = Date.parse(run.claimedAt);
    const to = run.finishedAt ? Date.parse(run.finishedAt) : now;
    const left = ((from - start) / span) * 100;
    return {
      variantOrder: order,
      step: run.step,
      attempt: run.attempt,
      trigger: run.trigger,
      state: run.state,
      instanceId: run.instanceId,
      claimedAt: run.claimedAt,
      sentAt: run.sentAt ?? null,
      finishedAt: run.finishedAt,
      durationMs: run.durationMs,
      httpStatus: run.httpStatus,
      error: run.error,
      open: run.open,
      left: Math.round(left * 100) / 100,
      width: Math.round(Math.max(0.4, Math.min(100 - left, ((to - from) / span) * 100)) * 100) / 100,
    };
  });
  return { entries, startAt: new Date(start).toISOString(), endAt: new Date(end).toISOString(), spanMs: end - start };
}

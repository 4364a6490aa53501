/**
 * What each stage answer means (docs/healing.md, "what each answer means"), as
 * a pure function unit-tested as a table. After a non-2xx answer or a timeout
 * the dispatcher re-reads the row once (`needsReread`) and acts on both:
 *
 * | answer | row re-read shows | counts | action |
 * |---|---|---|---|
 * | 2xx | — | yes | done |
 * | 409 | — | no | conflict: "skipped because the state changed meanwhile" |
 * | 400, 422 | — | yes | reject: give up at once (the job's input is bad) |
 * | 429 + Retry-After | — | no | busy: same attempt after Retry-After (capped) |
 * | anything | row gone | no | drop |
 * | anything | another attempt or step | — | moved: someone else moved it |
 * | 404 without "code":"job_not_found" | (step,'queued'), ours | no | service failure of the route |
 * | 401, 403, 405, other 4xx, 404 job_not_found (another database?) | (step,'queued'), ours | no | service failure |
 * | 5xx, refused, reset, DNS, no answer | (step,'queued'), ours | no | service failure |
 * | 5xx, refused, reset, no answer | (step,'failed'), ours | yes | retry rule (the stage recorded the failure) |
 * | no answer by the deadline + grace | (step,'running'), ours | yes | rescue |
 * | any other non-2xx | (step,'running'), ours | — | stage-owns: the stage runs it and records its end |
 * | any non-2xx | (step,'done'), ours | yes | done (the answer was lost) |
 */
import type { SubjectState } from '../sql/readSubject.js';
import type { Step } from '../steps.js';

export type StageAnswer =
  | { kind: 'http'; status: number; body: string; retryAfterMs?: number | undefined }
  /** No answer: refused, reset, DNS, TLS... */
  | { kind: 'error'; error: string }
  /** No answer by the deadline plus the grace. */
  | { kind: 'timeout'; error: string };

export type AnswerAction =
  | { kind: 'done' }
  | { kind: 'conflict' }
  | { kind: 'reject' }
  | { kind: 'busy'; waitMs: number }
  | { kind: 'drop' }
  | { kind: 'moved' }
  | { kind: 'service-failure'; scope: 'url' | 'route' }
  | { kind: 'retry-rule' }
  | { kind: 'rescue' }
  | { kind: 'stage-owns' };

/** Longest Retry-After honoured (ms). */
export const RETRY_AFTER_CAP_MS = 30_000;
/** Wait after a 429 without a usable Retry-After (ms). */
export const DEFAULT_BUSY_WAIT_MS = 1_000;

/** The stage's 404 for a job that does not exist carries this code (docs/stage-api.md). */
export function isJobNotFound(body: string): boolean {
  try {
    const v = JSON.parse(body) as unknown;
    return typeof v === 'object' && v !== null && (v as { code?: unknown }).code === 'job_not_found';
  } catch {
    return false;
  }
}

/** Whether the answer alone decides (no re-read needed). */
export function needsReread(a: StageAnswer): boolean {
  if (a.kind !== 'http') return true;
  const s = a.status;
  return !((s >= 200 && s < 300) || s === 409 || s === 400 || s === 422 || s === 429);
}

export function classifyAnswer(
  a: StageAnswer,
  reread: SubjectState | null | undefined,
  ours: { step: Step; attempt: number },
  retryAfterCapMs = RETRY_AFTER_CAP_MS,
): AnswerAction {
  if (a.kind === 'http') {
    const s = a.status;
    if (s >= 200 && s < 300) return { kind: 'done' };
    if (s === 409) return { kind: 'conflict' };
    if (s === 400 || s === 422) return { kind: 'reject' };
    if (s === 429) {
      const asked = a.retryAfterMs ?? DEFAULT_BUSY_WAIT_MS;
      return { kind: 'busy', waitMs: Math.max(0, Math.min(retryAfterCapMs, asked)) };
    }
  }
  if (reread === undefined) throw new Error('classifyAnswer: this answer needs the re-read row');
  if (reread === null) return { kind: 'drop' };
  if (reread.step !== ours.step || reread.attempt !== ours.attempt) return { kind: 'moved' };
  switch (reread.status) {
    case 'done':
      return { kind: 'done' };
    case 'failed':
      return { kind: 'retry-rule' };
    case 'running':
      return a.kind === 'timeout' ? { kind: 'rescue' } : { kind: 'stage-owns' };
    case 'queued': {
      if (reread.jobFailed) return { kind: 'moved' };
      const routeMissing = a.kind === 'http' && a.status === 404 && !isJobNotFound(a.body);
      return { kind: 'service-failure', scope: routeMissing ? 'route' : 'url' };
    }
    default:
      return { kind: 'moved' };
  }
}

/**
 * The request's deadline (docs/stage-api.md, "Deadline"): the dispatcher sends
 * `x-pipeline-timeout-ms: <integer ms left>` with each stage call; without a
 * usable value the stage uses the step's own timeout (STEP_GRAPH). One
 * AbortSignal per request carries it into every stage's work: model calls,
 * worker tasks, OCR. When it fires, the step is recorded `failed` with an
 * error that contains `deadline exceeded`.
 */
import { STEP_GRAPH, type Step } from '@feedlyai/pipeline-core';

export const TIMEOUT_HEADER = 'x-pipeline-timeout-ms';

/** Larger header values are ignored as nonsense (one hour). */
export const MAX_HEADER_TIMEOUT_MS = 3_600_000;

/**
 * The header's value in ms, or null when it is missing or malformed: not a
 * plain positive integer, above MAX_HEADER_TIMEOUT_MS, or given several times
 * (Node joins repeated headers with ", ", or hands an array).
 */
export function parseTimeoutHeader(value: string | string[] | undefined): number | null {
  if (typeof value !== 'string') return null;
  const v = value.trim();
  if (!/^[0-9]{1,10}$/.test(v)) return null;
  const ms = Number(v);
  return ms >= 1 && ms <= MAX_HEADER_TIMEOUT_MS ? ms : null;
}

/** The error a deadline aborts with; its message always contains `deadline exceeded`. */
export class DeadlineExceeded extends Error {
  constructor(
    readonly budgetMs: number,
    source: 'header' | 'step',
  ) {
    super(
      `deadline exceeded: ${budgetMs} ms ${source === 'header' ? `(${TIMEOUT_HEADER})` : "(the step's own timeout)"} passed`,
    );
    this.name = 'DeadlineExceeded';
  }
}

export interface Deadline {
  /** Epoch ms when the request's time is up. */
  readonly at: number;
  readonly budgetMs: number;
  readonly source: 'header' | 'step';
  /** Aborts at `at` with a DeadlineExceeded reason. */
  readonly signal: AbortSignal;
  /** Milliseconds left (0 when passed). */
  left(): number;
  /** Stops the timer (the request is answered). */
  dispose(): void;
}

export function createDeadline(step: Step, headerMs: number | null, now = Date.now()): Deadline {
  const source = headerMs !== null ? 'header' : 'step';
  const budgetMs = headerMs ?? STEP_GRAPH[step].timeoutMs;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new DeadlineExceeded(budgetMs, source)), budgetMs);
  const at = now + budgetMs;
  return {
    at,
    budgetMs,
    source,
    signal: ac.signal,
    left: () => Math.max(0, at - Date.now()),
    dispose: () => clearTimeout(timer),
  };
}

/**
 * `p`, or the signal's reason as soon as it aborts: the answer never waits
 * for work that ignores the signal (inline CPU work, a library call that
 * cannot be cancelled). The abandoned promise's outcome is swallowed.
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      p.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * The stage caller: POSTs a claimed step to its stage route with an undici
 * pool, the bearer token when configured, a bound on calls in flight (later
 * calls wait, they are never dropped) and a per-step timeout.
 *
 * - connection error (never reached / answer lost): the SAME attempt is sent
 *   again with exponential backoff and jitter, a bounded number of times (the
 *   stage answers 409 if it already started that attempt);
 * - 429 / 503: wait for Retry-After (seconds or HTTP date, capped), send the
 *   same attempt again;
 * - everything else is returned to the engine as an outcome.
 *
 * The step's timeout bounds the WHOLE send: the wait for a slot, every re-send
 * and every wait between them. Past it the call gives up ('timeout', left to
 * rescue) and sends nothing more, so no request of an attempt can reach the
 * stage after that step's rescue timeout (always longer), when the rescue may
 * already have dispatched the next attempt.
 */
import { setMaxListeners } from 'node:events';
import { Pool, type Dispatcher as UndiciDispatcher } from 'undici';
import { Semaphore, sleep } from './semaphore.js';
import type { ClaimedStep } from './sql/types.js';

export type DispatchOutcome =
  | { kind: 'succeeded'; status: number; durationMs: number; body: string }
  | { kind: 'conflict'; status: number; durationMs: number; body: string }
  | { kind: 'failed'; status: number; durationMs: number; error: string }
  | { kind: 'rejected'; status: number; durationMs: number; error: string }
  | { kind: 'unreachable'; durationMs: number; error: string }
  | { kind: 'timeout'; durationMs: number; error: string }
  | { kind: 'aborted'; durationMs: number; error: string };

export interface StageDispatcherOptions {
  stageApiUrl: string;
  stageApiToken?: string | undefined;
  /** Bound on stage calls in flight (default 64). */
  maxInFlight?: number;
  /** Re-sends of the same attempt after connection errors (default 5). */
  connectionRetries?: number;
  connectionBackoffBaseMs?: number;
  connectionBackoffMaxMs?: number;
  /** Longest Retry-After honoured (default 30 s). */
  retryAfterCapMs?: number;
  /** How many 429/503 answers in a row before leaving the step to rescue (default 50). */
  maxBusyWaits?: number;
  /** An undici dispatcher to use instead of the built-in pool (tests). */
  dispatcher?: UndiciDispatcher;
  random?: () => number;
  /** Called before each re-send (for logs). */
  onResend?: (info: { claimed: ClaimedStep; reason: string; waitMs: number; try: number }) => void;
}

export interface StageRequest {
  claimed: ClaimedStep;
  route: string;
  timeoutMs: number;
}

class TimeoutError extends Error {}

/** Parses Retry-After (delta seconds or HTTP date) into ms; undefined when absent or unparsable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  const trimmed = v.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

export class StageDispatcher {
  private readonly origin: string;
  private readonly basePath: string;
  private readonly client: UndiciDispatcher;
  private readonly ownsClient: boolean;
  private readonly semaphore: Semaphore;
  private readonly abort = new AbortController();
  private readonly random: () => number;
  private readonly headers: Record<string, string>;

  constructor(private readonly opts: StageDispatcherOptions) {
    let url: URL;
    try {
      url = new URL(opts.stageApiUrl);
    } catch {
      throw new Error(`invalid stage API URL: ${opts.stageApiUrl}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new Error(`stage API URL must be http(s): ${opts.stageApiUrl}`);
    }
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, '');
    const maxInFlight = opts.maxInFlight ?? 64;
    this.semaphore = new Semaphore(maxInFlight);
    // One 'abort' listener per call in flight or waiting: more than Node's default warning threshold.
    setMaxListeners(0, this.abort.signal);
    this.random = opts.random ?? Math.random;
    this.ownsClient = !opts.dispatcher;
    this.client = opts.dispatcher ?? new Pool(this.origin, { connections: maxInFlight, keepAliveTimeout: 10_000 });
    this.headers = { 'content-type': 'application/json' };
    if (opts.stageApiToken) this.headers.authorization = `Bearer ${opts.stageApiToken}`;
  }

  get inFlight(): number {
    return this.semaphore.inUse;
  }

  get waiting(): number {
    return this.semaphore.waiting;
  }

  /** Sends one claimed attempt, re-sending it on connection errors and busy answers. */
  async send(req: StageRequest): Promise<DispatchOutcome> {
    const started = performance.now();
    const elapsed = () => performance.now() - started;
    const deadline = started + req.timeoutMs;
    const expired = (what: string): DispatchOutcome => ({
      kind: 'timeout',
      durationMs: elapsed(),
      error: `no answer within ${req.timeoutMs} ms (${what})`,
    });
    if (this.abort.signal.aborted) return { kind: 'aborted', durationMs: 0, error: 'dispatcher closed' };
    const release = await this.semaphore.acquire();
    try {
      if (performance.now() >= deadline) return expired('waited for a free slot');
      const c = req.claimed;
      const body = JSON.stringify({
        job_id: c.jobId,
        tenant_id: c.tenantId,
        ...(c.jobVariantsId ? { job_variants_id: c.jobVariantsId } : {}),
        attempt: c.attempt,
      });
      let connectionTries = 0;
      let busyWaits = 0;
      for (;;) {
        if (this.abort.signal.aborted) return { kind: 'aborted', durationMs: elapsed(), error: 'dispatcher closed' };
        const left = Math.floor(deadline - performance.now());
        if (left <= 0) return expired(`${connectionTries + busyWaits} re-sends`);
        let res: { status: number; retryAfter: string | string[] | undefined; text: string };
        try {
          res = await this.post(req, body, left);
        } catch (err) {
          if (this.abort.signal.aborted) {
            return { kind: 'aborted', durationMs: elapsed(), error: 'dispatcher closed' };
          }
          if (err instanceof TimeoutError) return expired(err.message);
          const msg = describeError(err);
          if (connectionTries >= (this.opts.connectionRetries ?? 5)) {
            return { kind: 'unreachable', durationMs: elapsed(), error: msg };
          }
          connectionTries++;
          const base = this.opts.connectionBackoffBaseMs ?? 200;
          const exp = Math.min(this.opts.connectionBackoffMaxMs ?? 5_000, base * 2 ** (connectionTries - 1));
          const waitMs = Math.round(exp / 2 + (this.random() * exp) / 2);
          if (performance.now() + waitMs >= deadline) return expired(`connection error: ${msg}`);
          this.opts.onResend?.({ claimed: c, reason: `connection error: ${msg}`, waitMs, try: connectionTries });
          await sleep(waitMs, this.abort.signal);
          continue;
        }
        const d = elapsed();
        if (res.status >= 200 && res.status < 300)
          return { kind: 'succeeded', status: res.status, durationMs: d, body: res.text };
        if (res.status === 409) return { kind: 'conflict', status: res.status, durationMs: d, body: res.text };
        if (res.status === 429 || res.status === 503) {
          if (busyWaits >= (this.opts.maxBusyWaits ?? 50)) {
            return { kind: 'unreachable', durationMs: d, error: `stage busy (${res.status}) ${busyWaits} times` };
          }
          busyWaits++;
          const cap = this.opts.retryAfterCapMs ?? 30_000;
          const asked = parseRetryAfter(res.retryAfter);
          const waitMs = Math.min(cap, asked ?? Math.round(500 + this.random() * 500));
          if (performance.now() + waitMs >= deadline) return expired(`stage busy (${res.status})`);
          this.opts.onResend?.({ claimed: c, reason: `stage busy (${res.status})`, waitMs, try: busyWaits });
          await sleep(waitMs, this.abort.signal);
          continue;
        }
        const error = `stage answered ${res.status}: ${res.text.slice(0, 500)}`;
        if (res.status >= 500) return { kind: 'failed', status: res.status, durationMs: d, error };
        return { kind: 'rejected', status: res.status, durationMs: d, error };
      }
    } finally {
      release();
    }
  }

  private async post(
    req: StageRequest,
    body: string,
    timeoutMs: number,
  ): Promise<{ status: number; retryAfter: string | string[] | undefined; text: string }> {
    const ac = new AbortController();
    const onClose = () => ac.abort(new Error('dispatcher closed'));
    this.abort.signal.addEventListener('abort', onClose, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort(new TimeoutError(`no answer within ${req.timeoutMs} ms`));
    }, timeoutMs);
    try {
      const res = await this.client.request({
        origin: this.origin,
        path: `${this.basePath}${req.route}`,
        method: 'POST',
        headers: this.headers,
        body,
        signal: ac.signal,
      });
      const text = await res.body.text();
      return { status: res.statusCode, retryAfter: res.headers['retry-after'], text };
    } catch (err) {
      if (timedOut) throw new TimeoutError(`no answer within ${req.timeoutMs} ms`);
      throw err;
    } finally {
      clearTimeout(timer);
      this.abort.signal.removeEventListener('abort', onClose);
    }
  }

  /** Aborts every call in flight and every wait. */
  abortAll(): void {
    this.abort.abort();
  }

  async close(): Promise<void> {
    this.abort.abort();
    if (this.ownsClient) await this.client.destroy().catch(() => {});
  }
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: string }).code;
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const parts = [code, err.message, cause?.code].filter(Boolean);
    return parts.join(' ') || err.name;
  }
  return String(err);
}

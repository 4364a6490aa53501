/**
 * The HTTP side of a stage call: one POST, no retries of its own (the
 * dispatcher decides what an answer means: answers.ts). One undici pool per
 * stage origin, the bearer token when configured, the deadline header
 * `x-pipeline-timeout-ms` (docs/stage-api.md) and a client timeout of the
 * deadline plus a grace, after which the call counts as "no answer".
 */
import { setMaxListeners } from 'node:events';
import { type Attributes, type Context, propagation } from '@opentelemetry/api';
import { Pool, type Dispatcher as UndiciDispatcher } from 'undici';
import type { StageAnswer } from './answers.js';
import { endStageRequestSpan, startStageRequestSpan } from './tracing.js';

/** The header that carries the time the stage has for this call, in ms. */
export const DEADLINE_HEADER = 'x-pipeline-timeout-ms';

export interface StageClientOptions {
  token?: string | undefined;
  /** Connections per stage origin (default 64). */
  connections?: number;
  /** An undici dispatcher to use for every origin instead of the built-in pools (tests). */
  dispatcher?: UndiciDispatcher | undefined;
}

export interface StageCall {
  baseUrl: string;
  route: string;
  body: string;
  /** Sent as x-pipeline-timeout-ms: the stage stops its work when it passes. */
  deadlineMs: number;
  /** How long to wait for the answer (the deadline plus a grace). */
  waitMs: number;
  /** Extra headers. */
  headers?: Record<string, string>;
  /**
   * The dispatch span's context: the request gets a client span under it, and
   * its `traceparent` is sent to the stage through the host's propagator
   * (docs/tracing.md).
   */
  trace?: Context;
  /** Attributes of the client span (job id, variant id, step, attempt). */
  attributes?: Attributes;
  /** Aborts this call. */
  signal?: AbortSignal;
}

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

/** Validates a stage base URL; throws naming it. Returns origin and base path. */
export function parseBaseUrl(raw: string): { origin: string; basePath: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`invalid stage API URL: ${raw}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`stage API URL must be http(s): ${raw}`);
  return { origin: url.origin, basePath: url.pathname.replace(/\/+$/, '') };
}

export class StageClient {
  private readonly pools = new Map<string, UndiciDispatcher>();
  private readonly abort = new AbortController();
  private readonly headers: Record<string, string>;

  constructor(private readonly o: StageClientOptions) {
    // One 'abort' listener per call in flight: more than Node's default warning threshold.
    setMaxListeners(0, this.abort.signal);
    this.headers = { 'content-type': 'application/json' };
    if (o.token) this.headers.authorization = `Bearer ${o.token}`;
  }

  private pool(origin: string): UndiciDispatcher {
    if (this.o.dispatcher) return this.o.dispatcher;
    let p = this.pools.get(origin);
    if (!p) {
      p = new Pool(origin, { connections: this.o.connections ?? 64, keepAliveTimeout: 10_000 });
      this.pools.set(origin, p);
    }
    return p;
  }

  get closed(): boolean {
    return this.abort.signal.aborted;
  }

  async post(call: StageCall): Promise<StageAnswer> {
    const { origin, basePath } = parseBaseUrl(call.baseUrl);
    if (this.abort.signal.aborted) return { kind: 'error', error: 'dispatcher closed' };
    const ac = new AbortController();
    const onClose = () => ac.abort(new Error('dispatcher closed'));
    this.abort.signal.addEventListener('abort', onClose, { once: true });
    call.signal?.addEventListener('abort', onClose, { once: true });
    const path = `${basePath}${call.route}`;
    const traced = call.trace ? startStageRequestSpan(call.trace, call.route, origin, path, call.attributes) : null;
    const traceHeaders: Record<string, string> = {};
    if (traced) propagation.inject(traced.context, traceHeaders);
    let status: number | null = null;
    let failure: string | null = null;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort(new Error(`no answer within ${call.waitMs} ms`));
    }, call.waitMs);
    try {
      const res = await this.pool(origin).request({
        origin,
        path,
        method: 'POST',
        headers: {
          ...this.headers,
          ...(call.headers ?? {}),
          ...traceHeaders,
          [DEADLINE_HEADER]: String(Math.max(1, Math.round(call.deadlineMs))),
        },
        body: call.body,
        signal: ac.signal,
      });
      const text = await res.body.text();
      status = res.statusCode;
      return {
        kind: 'http',
        status: res.statusCode,
        body: text,
        retryAfterMs: parseRetryAfter(res.headers['retry-after']),
      };
    } catch (err) {
      failure = timedOut ? `no answer within ${call.waitMs} ms` : describeError(err);
      if (timedOut) return { kind: 'timeout', error: failure };
      return { kind: 'error', error: failure };
    } finally {
      if (traced) endStageRequestSpan(traced.span, status, failure);
      clearTimeout(timer);
      this.abort.signal.removeEventListener('abort', onClose);
      call.signal?.removeEventListener('abort', onClose);
    }
  }

  /** Aborts every call in flight. */
  abortAll(): void {
    this.abort.abort();
  }

  async close(): Promise<void> {
    this.abort.abort();
    if (!this.o.dispatcher) await Promise.all([...this.pools.values()].map((p) => p.destroy().catch(() => {})));
  }
}

export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: string }).code;
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const parts = [code, err.message, cause?.code].filter(Boolean);
    return parts.join(' ') || err.name;
  }
  return String(err);
}

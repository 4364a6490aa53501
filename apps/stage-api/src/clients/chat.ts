/**
 * One OpenAI-compatible chat-completions client (vLLM, Ollama, llama.cpp,
 * OpenAI all speak it), used for the VLM and the LLM.
 *
 * - the image travels as a `data:` URL in an `image_url` content part;
 * - the answer is constrained with `response_format: { type: 'json_schema' }`
 *   and validated with zod: an answer that is not JSON or not the schema is a
 *   clear ModelError (the step then fails with it);
 * - one timeout per attempt; retries with exponential backoff and jitter on
 *   429, 5xx and connection errors, honouring Retry-After;
 * - a call may carry the stage request's AbortSignal and deadline
 *   (docs/stage-api.md, "Deadline"): the signal aborts the request in flight
 *   (the call rejects with the signal's reason), each attempt's timeout ends
 *   at the deadline at the latest, and no retry wait that would end past the
 *   deadline is started (the call gives up at once with the last error);
 * - each call is a CLIENT span `chat <model>` under the stage request's span
 *   (docs/tracing.md), its retries included.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SpanKind } from '@opentelemetry/api';
import { type Dispatcher, request } from 'undici';
import type { z } from 'zod';
import { withChildSpan } from '../tracing.js';

export type ModelErrorKind = 'http' | 'timeout' | 'connection' | 'invalid_answer';

export class ModelError extends Error {
  readonly kind: ModelErrorKind;
  readonly status: number | undefined;
  constructor(kind: ModelErrorKind, message: string, status?: number) {
    super(message);
    this.name = 'ModelError';
    this.kind = kind;
    this.status = status;
  }
}

export interface ChatClientOptions {
  /** Name used in error messages: 'VLM' or 'LLM'. */
  name: string;
  /** Base URL ending before `/chat/completions`, e.g. `http://gpu:8000/v1`. */
  baseUrl: string;
  model: string;
  apiKey?: string | null;
  timeoutMs: number;
  maxRetries: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  dispatcher?: Dispatcher;
}

export interface JsonRequest<T> {
  system: string;
  user: string;
  /** PNG or JPEG bytes sent as a data URL. */
  image?: { bytes: Uint8Array; mime: string } | undefined;
  /** Name and JSON schema for response_format. */
  schemaName: string;
  jsonSchema: Readonly<Record<string, unknown>>;
  /** The validator of the answer. */
  validate: z.ZodType<T>;
  temperature?: number;
  maxTokens?: number;
}

/** Per-call options: the stage request's signal and deadline. */
export interface CallOptions {
  signal?: AbortSignal | undefined;
  /** Epoch ms after which no attempt or retry wait may end. */
  deadline?: number | undefined;
}

export interface JsonAnswer<T> {
  value: T;
  model: string;
  attempts: number;
}

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/** Retry-After in ms (seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Math.round(Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** Strips a ```json fence some servers wrap around JSON answers. */
function unfence(s: string): string {
  const m = /^\s*```(?:json)?\s*([\s\S]*?)\s*```\s*$/i.exec(s);
  return m ? (m[1] as string) : s;
}

export interface ChatClient {
  readonly name: string;
  readonly model: string;
  readonly baseUrl: string;
  completeJson<T>(req: JsonRequest<T>, opts?: CallOptions): Promise<JsonAnswer<T>>;
  /** GET {baseUrl}/models with a short timeout: is the backend reachable? */
  ping(timeoutMs?: number): Promise<{ reachable: boolean; detail: string }>;
}

export function createChatClient(o: ChatClientOptions): ChatClient {
  const base = o.baseUrl.replace(/\/+$/, '');
  const backoffBase = o.backoffBaseMs ?? 500;
  const backoffMax = o.backoffMaxMs ?? 15_000;
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`;

  async function once(
    body: string,
    opts: CallOptions,
  ): Promise<{ status: number; text: string; retryAfterMs: number | undefined }> {
    const outer = opts.signal;
    outer?.throwIfAborted();
    // With a signal, the signal itself ends the attempt at the deadline (and says so);
    // with only a deadline, the attempt's own timer stops there.
    const toDeadline = opts.deadline !== undefined ? Math.max(1, opts.deadline - Date.now()) : Number.POSITIVE_INFINITY;
    const byDeadline = !outer && toDeadline < o.timeoutMs;
    const timeoutMs = byDeadline ? toDeadline : o.timeoutMs;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    const signal = outer ? AbortSignal.any([ac.signal, outer]) : ac.signal;
    try {
      const res = await request(`${base}/chat/completions`, {
        method: 'POST',
        headers,
        body,
        signal,
        ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}),
      });
      const text = await res.body.text();
      return { status: res.statusCode, text, retryAfterMs: parseRetryAfter(res.headers['retry-after']) };
    } catch (err) {
      if (outer?.aborted) throw outer.reason;
      if (ac.signal.aborted) {
        throw new ModelError(
          'timeout',
          byDeadline
            ? `${o.name} did not answer before the deadline: deadline exceeded (${base})`
            : `${o.name} did not answer within ${timeoutMs} ms (${base})`,
        );
      }
      const code = (err as { code?: string }).code ?? '';
      throw new ModelError(
        'connection',
        `${o.name} connection failed (${base}): ${code ? `${code} ` : ''}${(err as Error).message}`,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  let host = base;
  try {
    host = new URL(base).host;
  } catch {
    // Validated by the configuration; kept as given otherwise.
  }

  async function completeJson<T>(req: JsonRequest<T>, opts: CallOptions = {}): Promise<JsonAnswer<T>> {
    return await withChildSpan(
      `chat ${o.model}`,
      {
        'gen_ai.operation.name': 'chat',
        'gen_ai.request.model': o.model,
        'server.address': host,
        'pipeline.model.backend': o.name.toLowerCase(),
      },
      async (span) => {
        const a = await completeJsonUntraced(req, opts);
        span.setAttributes({ 'gen_ai.response.model': a.model, 'pipeline.model.attempts': a.attempts });
        return a;
      },
      SpanKind.CLIENT,
    );
  }

  async function completeJsonUntraced<T>(req: JsonRequest<T>, opts: CallOptions): Promise<JsonAnswer<T>> {
    const userContent: unknown[] = [{ type: 'text', text: req.user }];
    if (req.image) {
      const b64 = Buffer.from(req.image.bytes.buffer, req.image.bytes.byteOffset, req.image.bytes.byteLength).toString(
        'base64',
      );
      userContent.push({ type: 'image_url', image_url: { url: `data:${req.image.mime};base64,${b64}` } });
    }
    const body = JSON.stringify({
      model: o.model,
      messages: [
        { role: 'system', content: req.system },
        { role: 'user', content: userContent },
      ],
      response_format: {
        type: 'json_schema',
        json_schema: { name: req.schemaName, strict: true, schema: req.jsonSchema },
      },
      temperature: req.temperature ?? 0.2,
      max_tokens: req.maxTokens ?? 800,
      stream: false,
    });

    let attempt = 0;
    for (;;) {
      attempt++;
      let retryable: ModelError;
      let waitMs: number | undefined;
      try {
        const r = await once(body, opts);
        if (r.status >= 200 && r.status < 300) return { ...parseAnswer(r.text, req.validate), attempts: attempt };
        const snippet = r.text.slice(0, 300).replace(/\s+/g, ' ');
        const err = new ModelError('http', `${o.name} answered HTTP ${r.status}: ${snippet}`, r.status);
        if (!RETRYABLE_STATUS.has(r.status)) throw err;
        retryable = err;
        waitMs = r.retryAfterMs;
      } catch (err) {
        if (!(err instanceof ModelError)) throw err;
        if (err.kind === 'connection') retryable = err;
        else throw err;
      }
      if (attempt > o.maxRetries) {
        throw new ModelError(
          retryable.kind,
          `${retryable.message} (gave up after ${attempt} attempts)`,
          retryable.status,
        );
      }
      const backoff = Math.min(backoffMax, backoffBase * 2 ** (attempt - 1));
      const delay =
        waitMs !== undefined ? Math.min(waitMs, backoffMax * 4) : backoff / 2 + Math.random() * (backoff / 2);
      if (opts.deadline !== undefined && Date.now() + delay >= opts.deadline) {
        throw new ModelError(
          retryable.kind,
          `${retryable.message} (no retry: the next one would start ${Math.round(delay)} ms from now, past the request's deadline)`,
          retryable.status,
        );
      }
      await sleep(delay, undefined, opts.signal ? { signal: opts.signal } : undefined).catch((err: unknown) => {
        throw opts.signal?.aborted ? opts.signal.reason : err;
      });
    }
  }

  function parseAnswer<T>(text: string, validate: z.ZodType<T>): { value: T; model: string } {
    let payload: { model?: string; choices?: Array<{ message?: { content?: unknown; refusal?: unknown } }> };
    try {
      payload = JSON.parse(text);
    } catch {
      throw new ModelError('invalid_answer', `${o.name} answer is not a JSON chat completion: ${text.slice(0, 200)}`);
    }
    const message = payload.choices?.[0]?.message;
    if (!message) throw new ModelError('invalid_answer', `${o.name} answer has no choices[0].message`);
    if (typeof message.refusal === 'string' && message.refusal) {
      throw new ModelError('invalid_answer', `${o.name} refused: ${message.refusal.slice(0, 200)}`);
    }
    if (typeof message.content !== 'string' || message.content.trim() === '') {
      throw new ModelError('invalid_answer', `${o.name} answer has no text content`);
    }
    let json: unknown;
    try {
      json = JSON.parse(unfence(message.content));
    } catch {
      throw new ModelError(
        'invalid_answer',
        `${o.name} answer content is not valid JSON: ${message.content.slice(0, 200).replace(/\s+/g, ' ')}`,
      );
    }
    const parsed = validate.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      throw new ModelError('invalid_answer', `${o.name} answer does not match the expected schema: ${issues}`);
    }
    return { value: parsed.data, model: payload.model ?? o.model };
  }

  async function ping(timeoutMs = 2_000): Promise<{ reachable: boolean; detail: string }> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    try {
      const res = await request(`${base}/models`, {
        method: 'GET',
        headers: o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {},
        signal: ac.signal,
        ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}),
      });
      await res.body.dump().catch(() => {});
      // Any HTTP answer means the server is up; 401/404 still says so.
      return { reachable: true, detail: `HTTP ${res.statusCode}` };
    } catch (err) {
      return {
        reachable: false,
        detail: ac.signal.aborted ? `no answer within ${timeoutMs} ms` : (err as Error).message,
      };
    } finally {
      clearTimeout(timer);
    }
  }

  return { name: o.name, model: o.model, baseUrl: base, completeJson, ping };
}

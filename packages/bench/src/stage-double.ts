/**
 * A stage server double for the benchmarks and the chaos suite: a node:http
 * server answering every stage route of the stage HTTP API as a no-op that
 * follows the state machine through pipeline-core's own guarded transitions
 * (`stageStart`, then `stageFinishDone` or `stageFinishFailed` in the same
 * request), with the answers the engine acts on (docs/chaos.md, "The stage
 * double"):
 *
 * - 2xx: done. 409: the row was not in the state the request expected (the
 *   verdict allows none). 400: bad body. 404 with `"code": "job_not_found"`:
 *   no such job or variant for that tenant.
 * - 500 only after the step was recorded `(step,'failed')` (an injected
 *   failure, at most one per (subject, step)).
 * - 503: the database could not be reached until the request's deadline
 *   (`x-pipeline-timeout-ms`) and nothing was recorded, or a finish could not
 *   be written (the result is dropped, the row stays running).
 * - 401 during a credential rotation (`rejectAuth`), 429 + Retry-After when
 *   the optional admission limit is full, connection refused during an
 *   outage (`down`).
 *
 * Every answer is counted per (subject, step) here, outside the engine's own
 * tables: the chaos suite's verdict is read from these counts.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  isJobLevel,
  progressIndex,
  type Queryable,
  type RowState,
  type StageSubject,
  type Step,
  stageFinishDone,
  stageFinishFailed,
  stageReadBack,
  stageStart,
  stepForRoute,
} from '@feedlyai/pipeline-core';
import pg from 'pg';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_BODY = 16 * 1024;
/** The deadline of a request without a valid `x-pipeline-timeout-ms` header. */
export const DEFAULT_DEADLINE_MS = 30_000;
/** The longest deadline a header may ask for (a day); longer values are ignored as malformed. */
const MAX_DEADLINE_MS = 86_400_000;
/** The code of a 404 about a job or variant that does not exist (docs/stage-api.md). */
export const JOB_NOT_FOUND = 'job_not_found';

export interface StageRequestBody {
  job_id: string;
  tenant_id: string;
  job_variants_id?: string;
  attempt?: number;
}

/** One request as the double saw it. */
export interface StageArrival {
  step: Step;
  /** `performance.now()` when the request's headers arrived (same clock as the caller's, in-process). */
  at: number;
  body: StageRequestBody;
  /** The time the request was given (its `x-pipeline-timeout-ms`, or the 30 s default). */
  timeoutMs: number;
}

/** What an answer meant, for the counts. */
export type AnswerKind =
  /** 2xx: the step is done. */
  | 'ok'
  /** 409: not in the state the request expected (also: the same attempt already being handled). */
  | 'conflict'
  /** 500 after `(step,'failed')` was recorded: counts as an attempt. */
  | 'recorded500'
  /** 401: credential rotation. A service failure. */
  | 'unauthorized'
  /** 503: nothing recorded (database unreachable until the deadline, or the finish could not be written). */
  | 'unavailable'
  /** 429 + Retry-After: admission limit full. */
  | 'busy'
  /** 404 with code job_not_found. */
  | 'notFound'
  /** Anything else (400 bad body, 500 from a bug of the double). */
  | 'other';

export interface StageAnswer {
  step: Step;
  /** job_variants_id for a variant step, job_id for a job step (or job_id for a whole-job manual call). */
  subject: string;
  jobId: string;
  code: number;
  kind: AnswerKind;
  attempt: number | null;
}

export type PairCounts = Record<AnswerKind, number>;

export interface StageDoubleOptions {
  /** Database the double writes to (its own pool is created and closed by the double). */
  connectionString: string;
  /** Random work time between start and finish, in ms: [min, max]. Default [0, 0]. */
  latencyMs?: readonly [number, number];
  /**
   * Probability of an injected stage failure: the step is finished as `failed`,
   * then answered 500. At most one per (subject, step), so that a job cannot
   * reach the default attempt limit (3) by chance.
   */
  failureRate?: number;
  /** Random source (tests pass a seeded one). */
  random?: () => number;
  /** Pool size of the double's own connections (default 20). */
  poolMax?: number;
  /** Admission limit: more requests than this inside at once are answered 429 + Retry-After: 1. Default none. */
  maxInFlight?: number;
  /** Pause between tries while the database is unreachable (default 200 ms). */
  retryIntervalMs?: number;
  /**
   * Wraps the double's database access (tests: to lose the reply of a
   * statement that did run on the real database). Default: the pool itself.
   */
  wrapDb?: (pool: pg.Pool) => Queryable;
  /** Called synchronously when a request's body has been read, before any database work. */
  onArrival?: (a: StageArrival) => void;
  /**
   * Called just before the finish UPDATE that commits (step,'done') is sent
   * (`performance.now()`), for hop latencies measured inside a chain.
   */
  onFinishDone?: (f: { step: Step; jobId: string; subject: string; at: number }) => void;
  /** Called after each answer. */
  onAnswer?: (a: StageAnswer) => void;
  port?: number;
}

export interface AnswerRecord {
  code: number;
  kind: AnswerKind;
  attempt: number | null;
  /** ms since the double started. */
  atMs: number;
}

export interface StageDouble {
  /** Base URL, e.g. http://127.0.0.1:40123 (what STAGE_API_URL would be). Stays the same across outages. */
  url: string;
  port: number;
  /** The server listening now (null during an outage). */
  readonly server: Server | null;
  /** Answer codes per `${subject}|${step}` (subject: variant id, or job id for job steps). */
  counts(): Map<string, Map<number, number>>;
  /** Answers by kind per `${subject}|${step}`. */
  pairCounts(): Map<string, PairCounts>;
  /** Requests that reached the state check (answered 2xx or 409) per `${subject}|${step}`. */
  acceptedCounts(): Map<string, number>;
  /** The `${subject}|${step}` pairs that got their one injected (recorded) failure. */
  injectedPairs(): Set<string>;
  /** Total answers per code. */
  totals(): Record<number, number>;
  /** Total answers per kind. */
  kindTotals(): PairCounts;
  /** Every answer for one `${subject}|${step}`, in order. */
  history(key: string): AnswerRecord[];
  /** Answers given, all codes. */
  requests(): number;
  /** Requests being handled now. */
  inFlight(): number;
  /** Connections reset because a request arrived on an old keep-alive connection during an outage. */
  resets(): number;
  /** Database errors retried (connection lost, server restarting), all requests together. */
  dbRetries(): number;
  /**
   * An outage: the listening socket is closed (new connections are refused),
   * idle keep-alive connections are closed, the requests already inside finish
   * normally (their connections close after the answer), and after `ms` the
   * double listens again on the same port. Resolves when it listens again
   * (`Date.now()` of both moments), or when the double was closed meanwhile.
   */
  down(ms: number): Promise<{ downAt: number; upAt: number }>;
  /** A credential rotation: for `ms` every stage request is answered 401 before anything is done. */
  rejectAuth(ms: number): Promise<{ from: number; until: number }>;
  reset(): void;
  close(): Promise<void>;
}

export const emptyPairCounts = (): PairCounts => ({
  ok: 0,
  conflict: 0,
  recorded500: 0,
  unauthorized: 0,
  unavailable: 0,
  busy: 0,
  notFound: 0,
  other: 0,
});

class BadRequest extends Error {}

function parseBody(raw: string): StageRequestBody {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new BadRequest('body is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadRequest('body must be a JSON object');
  const o = v as Record<string, unknown>;
  if (typeof o.job_id !== 'string' || !UUID.test(o.job_id)) throw new BadRequest('job_id must be a uuid');
  if (typeof o.tenant_id !== 'string' || o.tenant_id.length === 0 || o.tenant_id.length > 200) {
    throw new BadRequest('tenant_id must be a non-empty string');
  }
  if (o.job_variants_id !== undefined && (typeof o.job_variants_id !== 'string' || !UUID.test(o.job_variants_id))) {
    throw new BadRequest('job_variants_id must be a uuid');
  }
  if (o.attempt !== undefined && (!Number.isSafeInteger(o.attempt) || (o.attempt as number) < 1)) {
    throw new BadRequest('attempt must be a positive integer');
  }
  const out: StageRequestBody = { job_id: o.job_id, tenant_id: o.tenant_id };
  if (o.job_variants_id !== undefined) out.job_variants_id = o.job_variants_id as string;
  if (o.attempt !== undefined) out.attempt = o.attempt as number;
  return out;
}

/** The request's time budget: `x-pipeline-timeout-ms` when it is a positive integer, else the default. */
export function deadlineFromHeader(value: string | string[] | undefined): number {
  if (typeof value !== 'string' || !/^\d{1,9}$/.test(value.trim())) return DEFAULT_DEADLINE_MS;
  const ms = Number(value.trim());
  return ms > 0 && ms <= MAX_DEADLINE_MS ? ms : DEFAULT_DEADLINE_MS;
}

/**
 * A database error worth retrying until the deadline: the connection (or the
 * server) went away, or PostgreSQL is starting or shutting down. Other
 * SQLSTATEs are bugs and are not retried.
 */
export function isTransientDbError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    // 08 connection exception, 53 insufficient resources, 57 operator intervention
    // (admin shutdown, cannot connect now), 40 transaction rollback (deadlock, serialization).
    return ['08', '53', '57', '40'].includes(code.slice(0, 2));
  }
  if (typeof code === 'string' && code.startsWith('E')) return true; // ECONNREFUSED, ECONNRESET, EPIPE...
  return /connection|terminat|timeout|ECONN/i.test(err.message);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('payload too large'), { statusCode: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The result of one subject's start-work-finish. */
interface Outcome {
  code: number;
  kind: AnswerKind;
  body: unknown;
  attempt: number | null;
  headers?: Record<string, string>;
}

const notFound = (attempt: number | null): Outcome => ({
  code: 404,
  kind: 'notFound',
  body: { error: 'unknown job or variant, or tenant_id does not own it', code: JOB_NOT_FOUND },
  attempt,
});

const unavailable = (attempt: number | null, why: string): Outcome => ({
  code: 503,
  kind: 'unavailable',
  body: { error: `stage unavailable: ${why}` },
  attempt,
  headers: { 'retry-after': '1' },
});

export async function startStageDouble(opts: StageDoubleOptions): Promise<StageDouble> {
  const pool = new pg.Pool({ connectionString: opts.connectionString, max: opts.poolMax ?? 20 });
  // A connection killed under us (PostgreSQL restart) must not crash the process.
  pool.on('error', () => {});
  const db: Queryable = opts.wrapDb ? opts.wrapDb(pool) : pool;
  const random = opts.random ?? Math.random;
  const [latMin, latMax] = opts.latencyMs ?? [0, 0];
  const failureRate = opts.failureRate ?? 0;
  const retryIntervalMs = opts.retryIntervalMs ?? 200;
  const counts = new Map<string, Map<number, number>>();
  const kinds = new Map<string, PairCounts>();
  const totals: Record<number, number> = {};
  const kindTotals = emptyPairCounts();
  const histories = new Map<string, AnswerRecord[]>();
  const injected = new Set<string>();
  /** `${subject}|${step}|${attempt}` of the requests being handled. */
  const handling = new Set<string>();
  /** The token of the last start this double committed per `${subject}|${step}`. */
  const lastStart = new Map<string, string>();
  const startedAt = performance.now();
  let answered = 0;
  let inside = 0;
  let resets = 0;
  let dbRetries = 0;
  let isDown = false;
  let authRejectedUntil = 0;
  let closed = false;

  const record = (a: StageAnswer) => {
    const key = `${a.subject}|${a.step}`;
    let m = counts.get(key);
    if (!m) {
      m = new Map();
      counts.set(key, m);
    }
    m.set(a.code, (m.get(a.code) ?? 0) + 1);
    let k = kinds.get(key);
    if (!k) {
      k = emptyPairCounts();
      kinds.set(key, k);
    }
    k[a.kind]++;
    kindTotals[a.kind]++;
    let h = histories.get(key);
    if (!h) {
      h = [];
      histories.set(key, h);
    }
    h.push({ code: a.code, kind: a.kind, attempt: a.attempt, atMs: Math.round(performance.now() - startedAt) });
    totals[a.code] = (totals[a.code] ?? 0) + 1;
    answered++;
    opts.onAnswer?.(a);
  };

  const send = (res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.writableEnded || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(code, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      // During an outage the connections of the requests still inside close after their answer.
      ...(isDown ? { connection: 'close' } : {}),
      ...headers,
    });
    res.end(text);
  };

  /**
   * Runs `fn` until it succeeds, retrying transient database errors until the
   * deadline. `lost` is told whether a previous try failed (its effect unknown).
   * Resolves `null` when the deadline passed (or the double closed) without an answer.
   */
  async function untilDeadline<T>(deadline: number, fn: (lost: boolean) => Promise<T>): Promise<T | null> {
    let lost = false;
    for (;;) {
      try {
        return await fn(lost);
      } catch (err) {
        if (!isTransientDbError(err)) throw err;
        dbRetries++;
        lost = true;
        if (closed || Date.now() + retryIntervalMs >= deadline) return null;
        await sleep(retryIntervalMs);
      }
    }
  }

  /** The row is at a later step than `step` (so `step` was finished). */
  const isPast = (state: RowState | null, step: Step) =>
    state !== null && progressIndex(state.current_step as Step) > progressIndex(step);

  /**
   * The start, retried on database errors until the deadline: after a lost
   * answer, the read-back tells whether our start committed (the row is running
   * with our token); if not, the guarded start is simply sent again (it starts
   * the row if it is still startable, or returns its state for a 409 / 404).
   */
  async function start(s: StageSubject & { token: string }, deadline: number) {
    return await untilDeadline(deadline, async (lost) => {
      if (lost) {
        const rb = await stageReadBack(db, s);
        if (rb.ours && rb.state?.status === 'running') {
          return { started: true as const, attempt: rb.state.attempt };
        }
      }
      return await stageStart(db, s);
    });
  }

  /**
   * The finish, retried on database errors until the deadline. After a lost
   * answer, the read-back tells whether it committed:
   * - the row is ours with the finish's status;
   * - done: the row is already past the step while this double's last start of
   *   the pair is still ours (the engine moved on after our commit; only this
   *   double finishes steps);
   * - failed: the row is at the same step with a later attempt (the engine's
   *   retry of our recorded failure; a rescue of a running row cannot happen
   *   before the deadline it was sent with).
   * Still ours and running: sent again. Anything else: superseded. `null`: not
   * written by the deadline.
   */
  async function finish(
    kind: 'done' | 'failed',
    s: StageSubject & { token: string; attempt: number },
    deadline: number,
  ): Promise<boolean | null> {
    const pairKey = `${s.jobVariantsId ?? s.jobId}|${s.step}`;
    const f = { step: s.step, jobId: s.jobId, jobVariantsId: s.jobVariantsId, attempt: s.attempt };
    return await untilDeadline(deadline, async (lost) => {
      if (lost) {
        const rb = await stageReadBack(db, s);
        if (rb.ours && rb.state?.status === kind) return true;
        if (kind === 'done' && isPast(rb.state, s.step) && lastStart.get(pairKey) === s.token) return true;
        if (kind === 'failed' && rb.state?.current_step === s.step && rb.state.attempt > s.attempt) return true;
        if (!(rb.ours && rb.state?.status === 'running' && rb.state.attempt === s.attempt)) return false;
      }
      return kind === 'done'
        ? await stageFinishDone(db, f)
        : await stageFinishFailed(db, { ...f, error: 'stage double: injected failure' });
    });
  }

  /** One subject: start, work, finish. */
  async function runOne(s: StageSubject, deadline: number): Promise<Outcome> {
    const asked = s.attempt ?? null;
    const token = randomUUID();
    const pairKey = `${s.jobVariantsId ?? s.jobId}|${s.step}`;
    const started = await start({ ...s, token }, deadline);
    if (started === null) return unavailable(asked, 'database unreachable until the deadline; nothing recorded');
    if (!started.started) {
      if (!started.state) return notFound(asked);
      return {
        code: 409,
        kind: 'conflict',
        body: { error: 'not ready for this step', state: started.state },
        attempt: asked,
      };
    }
    lastStart.set(pairKey, token);
    const attempt = started.attempt;
    if (latMax > 0) await sleep(latMin + random() * (latMax - latMin));
    const subject = { ...s, token, attempt };
    if (failureRate > 0 && !injected.has(pairKey) && random() < failureRate) {
      const ok = await finish('failed', subject, deadline);
      if (ok === null) return unavailable(attempt, 'could not record the failure; the row stays running');
      if (!ok) return { code: 409, kind: 'conflict', body: { error: 'attempt superseded', attempt }, attempt };
      injected.add(pairKey);
      return { code: 500, kind: 'recorded500', body: { error: 'injected failure (recorded)', attempt }, attempt };
    }
    opts.onFinishDone?.({ step: s.step, jobId: s.jobId, subject: s.jobVariantsId ?? s.jobId, at: performance.now() });
    const ok = await finish('done', subject, deadline);
    if (ok === null) return unavailable(attempt, 'could not record the result; dropped, the row stays running');
    if (!ok) return { code: 409, kind: 'conflict', body: { error: 'attempt superseded', attempt }, attempt };
    return { code: 200, kind: 'ok', body: { ok: true, step: s.step, attempt }, attempt };
  }

  async function handle(req: IncomingMessage, res: ServerResponse, step: Step, at: number): Promise<void> {
    const timeoutMs = deadlineFromHeader(req.headers['x-pipeline-timeout-ms']);
    const deadline = Date.now() + timeoutMs;
    let body: StageRequestBody;
    try {
      body = parseBody(await readBody(req));
    } catch (err) {
      const code = (err as { statusCode?: number }).statusCode ?? 400;
      totals[code] = (totals[code] ?? 0) + 1;
      kindTotals.other++;
      answered++;
      send(res, code, { error: (err as Error).message });
      return;
    }
    opts.onArrival?.({ step, at, body, timeoutMs });
    const subject = body.job_variants_id ?? body.job_id;
    const answer = (o: Outcome, who = subject) => {
      record({ step, subject: who, jobId: body.job_id, code: o.code, kind: o.kind, attempt: o.attempt });
      send(res, o.code, o.body, o.headers);
    };
    const asked = body.attempt ?? null;
    if (Date.now() < authRejectedUntil) {
      answer({ code: 401, kind: 'unauthorized', body: { error: 'invalid token (rotation)' }, attempt: asked });
      return;
    }
    if (opts.maxInFlight !== undefined && inside > opts.maxInFlight) {
      answer({
        code: 429,
        kind: 'busy',
        body: { error: 'busy' },
        attempt: asked,
        headers: { 'retry-after': '1' },
      });
      return;
    }
    const jobLevel = isJobLevel(step);
    if (jobLevel && body.job_variants_id) {
      answer({
        code: 400,
        kind: 'other',
        body: { error: `${step} is a job-level step: no job_variants_id` },
        attempt: asked,
      });
      return;
    }
    const handlingKey = `${subject}|${step}|${asked ?? 'manual'}`;
    if (handling.has(handlingKey)) {
      answer({ code: 409, kind: 'conflict', body: { error: 'this attempt is already being handled' }, attempt: asked });
      return;
    }
    handling.add(handlingKey);
    try {
      const tenant = await untilDeadline(deadline, async () => {
        const r = await db.query<{ tenant_id: string }>('SELECT tenant_id FROM jobs WHERE job_id = $1', [body.job_id]);
        return { id: r.rows[0]?.tenant_id };
      });
      if (tenant === null) {
        answer(unavailable(asked, 'database unreachable until the deadline; nothing recorded'));
        return;
      }
      if (tenant.id === undefined || tenant.id !== body.tenant_id) {
        answer(notFound(asked));
        return;
      }
      if (jobLevel || body.job_variants_id) {
        const s = { step, jobId: body.job_id, jobVariantsId: body.job_variants_id, attempt: body.attempt };
        answer(await runOne(s, deadline));
        return;
      }
      // A manual variant-level call without job_variants_id: every variant of the job ready for the step.
      const ids = await db.query<{ job_variants_id: string }>(
        'SELECT job_variants_id FROM jobs_variants WHERE job_id = $1 ORDER BY creation_order',
        [body.job_id],
      );
      const results = [];
      for (const r of ids.rows) {
        const out = await runOne({ step, jobId: body.job_id, jobVariantsId: r.job_variants_id }, deadline);
        if (out.code === 409) continue;
        record({ step, subject: r.job_variants_id, jobId: body.job_id, code: out.code, kind: out.kind, attempt: null });
        results.push({ job_variants_id: r.job_variants_id, code: out.code });
      }
      if (results.length === 0) {
        answer({
          code: 409,
          kind: 'conflict',
          body: { error: 'no variant of this job is ready for this step' },
          attempt: null,
        });
        return;
      }
      // Each variant's answer was counted above; this is their summary.
      send(res, results.some((r) => r.code >= 500) ? 500 : 200, { results });
    } finally {
      handling.delete(handlingKey);
    }
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const at = performance.now();
    if (isDown) {
      // A request on a keep-alive connection opened before the outage: the box is rebooting.
      resets++;
      req.socket.destroy();
      return;
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET' && path === '/healthz') {
      send(res, 200, { ok: true, double: true });
      return;
    }
    const step = stepForRoute(path);
    if (!step) {
      send(res, 404, { error: `no route ${req.method} ${path}` });
      return;
    }
    if (req.method !== 'POST') {
      send(res, 405, { error: 'POST only' });
      return;
    }
    inside++;
    handle(req, res, step, at)
      .catch((err: unknown) => {
        totals[500] = (totals[500] ?? 0) + 1;
        kindTotals.other++;
        answered++;
        send(res, 500, { error: `stage double bug: ${(err as Error).message}` });
      })
      .finally(() => {
        inside--;
      });
  };

  const servers = new Set<Server>();
  let current: Server | null = null;
  let port = opts.port ?? 0;
  const listen = async (): Promise<Server> => {
    const srv = createServer(onRequest);
    srv.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => {
        srv.off('error', reject);
        resolve();
      });
    });
    servers.add(srv);
    srv.once('close', () => servers.delete(srv));
    return srv;
  };
  current = await listen();
  port = (current.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get server() {
      return current;
    },
    counts: () => counts,
    pairCounts: () => kinds,
    acceptedCounts: () => {
      const out = new Map<string, number>();
      for (const [k, c] of kinds) out.set(k, c.ok + c.conflict);
      return out;
    },
    injectedPairs: () => new Set(injected),
    totals: () => ({ ...totals }),
    kindTotals: () => ({ ...kindTotals }),
    history: (key) => [...(histories.get(key) ?? [])],
    requests: () => answered,
    inFlight: () => inside,
    resets: () => resets,
    dbRetries: () => dbRetries,
    down: async (ms) => {
      if (isDown || !current) throw new Error('the stage double is already down');
      const srv = current;
      current = null;
      isDown = true;
      srv.close();
      srv.closeIdleConnections();
      const downAt = Date.now();
      await sleep(ms);
      // The same port again; another process may hold it for a moment (EADDRINUSE): retry for 10 s.
      const until = Date.now() + 10_000;
      for (;;) {
        if (closed) return { downAt, upAt: Date.now() };
        try {
          current = await listen();
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== 'EADDRINUSE' || Date.now() > until) throw err;
          await sleep(100);
        }
      }
      isDown = false;
      return { downAt, upAt: Date.now() };
    },
    rejectAuth: async (ms) => {
      const from = Date.now();
      authRejectedUntil = from + ms;
      await sleep(ms);
      return { from, until: Date.now() };
    },
    reset: () => {
      counts.clear();
      kinds.clear();
      histories.clear();
      injected.clear();
      for (const k of Object.keys(totals)) delete totals[Number(k)];
      Object.assign(kindTotals, emptyPairCounts());
      answered = 0;
      resets = 0;
      dbRetries = 0;
    },
    close: async () => {
      closed = true;
      current = null;
      await Promise.all(
        [...servers].map(
          (srv) =>
            new Promise<void>((r) => {
              srv.closeAllConnections();
              if (srv.listening) srv.close(() => r());
              else r();
            }),
        ),
      );
      await pool.end().catch(() => {});
    },
  };
}

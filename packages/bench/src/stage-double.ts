/**
 * A stage server double for benchmarks and the chaos suite: a node:http server
 * answering every stage route of CONTRACTS as a no-op that follows the state
 * machine exactly, through pipeline-core's own guarded transitions
 * (`stageStart`, then `stageFinishDone` or `stageFinishFailed` in the same
 * request).
 *
 * It counts every request per (subject, step) with the code it answered, which
 * is what the chaos suite's "exactly once" rule is checked against: the count
 * lives here, outside the engine's own tables.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  isJobLevel,
  type StageSubject,
  type Step,
  stageFinishDone,
  stageFinishFailed,
  stageStart,
  stepForRoute,
} from '@feedlyai/pipeline-core';
import pg from 'pg';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_BODY = 16 * 1024;

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
}

export interface StageAnswer {
  step: Step;
  /** job_variants_id for a variant step, job_id for a job step (or job_id for a whole-job manual call). */
  subject: string;
  jobId: string;
  code: number;
  attempt: number | null;
}

export interface StageDoubleOptions {
  /** Database the double writes to (its own pool is created and closed by the double). */
  connectionString: string;
  /** Random work time between start and finish, in ms: [min, max]. Default [0, 0]. */
  latencyMs?: readonly [number, number];
  /** Probability of a stage failure: the step is finished as `failed` and the answer is 500. */
  failureRate?: number;
  /** Random source (tests pass a seeded one). */
  random?: () => number;
  /** Pool size of the double's own connections (default 20). */
  poolMax?: number;
  /** Called synchronously when a request's head arrives, before any database work. */
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

export interface StageDouble {
  /** Base URL, e.g. http://127.0.0.1:40123 (what STAGE_API_URL would be). */
  url: string;
  server: Server;
  /** Answer codes per `${subject}|${step}` (subject: variant id, or job id for job steps). */
  counts(): Map<string, Map<number, number>>;
  /** Requests answered with a code below 500 per `${subject}|${step}`. */
  acceptedCounts(): Map<string, number>;
  /** Total answers per code. */
  totals(): Record<number, number>;
  /** Every answer for one `${subject}|${step}`, in order (code, attempt, ms since start). */
  history(key: string): { code: number; attempt: number | null; atMs: number }[];
  /** Answers given, all codes. */
  requests(): number;
  reset(): void;
  close(): Promise<void>;
}

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

function send(res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function startStageDouble(opts: StageDoubleOptions): Promise<StageDouble> {
  const pool = new pg.Pool({ connectionString: opts.connectionString, max: opts.poolMax ?? 20 });
  // A connection killed under us (PostgreSQL restart) must not crash the process.
  pool.on('error', () => {});
  const random = opts.random ?? Math.random;
  const [latMin, latMax] = opts.latencyMs ?? [0, 0];
  const failureRate = opts.failureRate ?? 0;
  const counts = new Map<string, Map<number, number>>();
  const totals: Record<number, number> = {};
  const histories = new Map<string, { code: number; attempt: number | null; atMs: number }[]>();
  const startedAt = performance.now();
  let answered = 0;

  const record = (a: StageAnswer) => {
    const key = `${a.subject}|${a.step}`;
    let m = counts.get(key);
    if (!m) {
      m = new Map();
      counts.set(key, m);
    }
    m.set(a.code, (m.get(a.code) ?? 0) + 1);
    let h = histories.get(key);
    if (!h) {
      h = [];
      histories.set(key, h);
    }
    h.push({ code: a.code, attempt: a.attempt, atMs: Math.round(performance.now() - startedAt) });
    totals[a.code] = (totals[a.code] ?? 0) + 1;
    answered++;
    opts.onAnswer?.(a);
  };

  /** One subject: start, work, finish. Returns the HTTP code and body. */
  async function runOne(s: StageSubject): Promise<{ code: number; body: unknown; attempt: number | null }> {
    const started = await stageStart(pool, s);
    if (!started.started) {
      const asked = s.attempt ?? null;
      if (!started.state) return { code: 404, body: { error: 'unknown job or variant' }, attempt: asked };
      return { code: 409, body: { error: 'not ready for this step', state: started.state }, attempt: asked };
    }
    const attempt = started.attempt;
    if (latMax > 0) await sleep(latMin + random() * (latMax - latMin));
    const f = { step: s.step, jobId: s.jobId, jobVariantsId: s.jobVariantsId, attempt };
    if (failureRate > 0 && random() < failureRate) {
      await stageFinishFailed(pool, { ...f, error: 'stage double: injected failure' });
      return { code: 500, body: { error: 'injected failure', attempt }, attempt };
    }
    opts.onFinishDone?.({ step: s.step, jobId: s.jobId, subject: s.jobVariantsId ?? s.jobId, at: performance.now() });
    const ok = await stageFinishDone(pool, f);
    if (!ok) return { code: 409, body: { error: 'attempt superseded', attempt }, attempt };
    return { code: 200, body: { ok: true, step: s.step, attempt }, attempt };
  }

  async function handle(req: IncomingMessage, res: ServerResponse, step: Step, at: number): Promise<void> {
    let body: StageRequestBody;
    try {
      body = parseBody(await readBody(req));
    } catch (err) {
      const code = (err as { statusCode?: number }).statusCode ?? 400;
      send(res, code, { error: (err as Error).message });
      return;
    }
    opts.onArrival?.({ step, at, body });
    const jobLevel = isJobLevel(step);
    if (jobLevel && body.job_variants_id) {
      send(res, 400, { error: `${step} is a job-level step: no job_variants_id` });
      return;
    }
    let tenant: string | undefined;
    try {
      const r = await pool.query<{ tenant_id: string }>('SELECT tenant_id FROM jobs WHERE job_id = $1', [body.job_id]);
      tenant = r.rows[0]?.tenant_id;
    } catch (err) {
      // The database is unreachable: nothing was written, the row stays as it is.
      send(res, 503, { error: `database unavailable: ${(err as Error).message}` }, { 'retry-after': '1' });
      return;
    }
    const subjectOf = (variant?: string) => variant ?? body.job_id;
    if (tenant === undefined || tenant !== body.tenant_id) {
      const code = 404;
      record({ step, subject: subjectOf(body.job_variants_id), jobId: body.job_id, code, attempt: null });
      send(res, code, { error: 'unknown job, or tenant_id does not own it' });
      return;
    }
    try {
      if (jobLevel || body.job_variants_id) {
        const out = await runOne({
          step,
          jobId: body.job_id,
          jobVariantsId: body.job_variants_id,
          attempt: body.attempt,
        });
        record({
          step,
          subject: subjectOf(body.job_variants_id),
          jobId: body.job_id,
          code: out.code,
          attempt: out.attempt,
        });
        send(res, out.code, out.body);
        return;
      }
      // A manual variant-level call without job_variants_id: every variant of the job ready for the step.
      const ids = await pool.query<{ job_variants_id: string }>(
        'SELECT job_variants_id FROM jobs_variants WHERE job_id = $1 ORDER BY creation_order',
        [body.job_id],
      );
      const results = [];
      for (const r of ids.rows) {
        const out = await runOne({ step, jobId: body.job_id, jobVariantsId: r.job_variants_id });
        if (out.code === 409) continue;
        record({ step, subject: r.job_variants_id, jobId: body.job_id, code: out.code, attempt: out.attempt });
        results.push({ job_variants_id: r.job_variants_id, code: out.code });
      }
      const failed = results.some((r) => r.code >= 500);
      if (results.length === 0) {
        record({ step, subject: body.job_id, jobId: body.job_id, code: 409, attempt: null });
        send(res, 409, { error: 'no variant of this job is ready for this step' });
      } else send(res, failed ? 500 : 200, { results });
    } catch (err) {
      // A database error once the start was sent (connection killed, server restarting): the
      // start may or may not have committed, so this is a stage failure (500), not "busy" (503,
      // which promises the row is still queued and invites a re-send of the same attempt). The
      // row is left queued or running, and the engine's rescue runs it again as a new attempt.
      const code = 500;
      record({
        step,
        subject: subjectOf(body.job_variants_id),
        jobId: body.job_id,
        code,
        attempt: body.attempt ?? null,
      });
      send(res, code, { error: `stage failure, database error: ${(err as Error).message}` });
    }
  }

  const server = createServer((req, res) => {
    const at = performance.now();
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
    handle(req, res, step, at).catch((err: unknown) => {
      send(res, 500, { error: `stage double bug: ${(err as Error).message}` });
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    server,
    counts: () => counts,
    acceptedCounts: () => {
      const out = new Map<string, number>();
      for (const [k, m] of counts) {
        let n = 0;
        for (const [code, c] of m) if (code < 500) n += c;
        out.set(k, n);
      }
      return out;
    },
    totals: () => ({ ...totals }),
    history: (key) => [...(histories.get(key) ?? [])],
    requests: () => answered,
    reset: () => {
      counts.clear();
      histories.clear();
      for (const k of Object.keys(totals)) delete totals[Number(k)];
      answered = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await pool.end().catch(() => {});
    },
  };
}

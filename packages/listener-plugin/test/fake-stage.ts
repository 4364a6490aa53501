/**
 * The only test double: a stage server that implements the stage side of the
 * state machine with pipeline-core's own guarded transitions (stageStart,
 * stageFinishDone, stageFinishFailed) against the real database, records
 * every request, and can be scripted per step (status sequence, delay, hang).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { stageFinishDone, stageFinishFailed, stageStart, type Step, stepForRoute } from '@feedlyai/pipeline-core';
import type pg from 'pg';

export interface Behaviour {
  /**
   * Answer with this status. 2xx (default 200): start, finish done. 5xx (not
   * 503): start, finish failed, answer. 409/400/404/401 and 429/503: answer
   * without touching the database.
   */
  status?: number;
  /** Wait this long between start and finish. */
  delayMs?: number;
  /** Start, then never answer and never finish (until release()). */
  hang?: boolean;
  /** Retry-After header value for 429/503. */
  retryAfter?: string;
  /** Drop the connection without an answer (before start). */
  drop?: boolean;
  /** 5xx only: false answers without touching the database (the stage recorded nothing). Default true. */
  record?: boolean;
  /** With a 404: the body's code (the stage's 404 for a missing job says "job_not_found"). */
  code?: string;
}

export interface RecordedRequest {
  route: string;
  step: Step | undefined;
  jobId: string;
  jobVariantsId: string | undefined;
  tenantId: string;
  attempt: number | undefined;
  authorization: string | undefined;
  /** performance.now() when the request arrived. */
  at: number;
  /** The x-pipeline-timeout-ms header as received. */
  timeoutHeader: string | undefined;
  /** Status answered (undefined while hanging). */
  status?: number;
}

export interface FakeStage {
  url: string;
  requests: RecordedRequest[];
  /** Requests for one step (optionally one subject). */
  calls(step: Step, subjectId?: string): RecordedRequest[];
  /**
   * Queue behaviours for a step (or for one subject's step with `subject`):
   * each request takes the next one; with `repeat` the last one stays.
   */
  script(step: Step, behaviours: Behaviour[], opts?: { repeat?: boolean; subject?: string }): void;
  /** Finish a hung request of this subject now, as the stage would: finish done with its attempt. Returns whether the finish was accepted. */
  finishHung(subjectId: string, outcome?: 'done' | 'failed'): Promise<boolean>;
  onRequest?: (r: RecordedRequest) => void;
  /** Stops listening (connections are refused) until up(). */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

interface Hung {
  step: Step;
  jobId: string;
  jobVariantsId: string | undefined;
  attempt: number;
  res: ServerResponse;
}

export async function startFakeStage(pool: pg.Pool, opts: { token?: string } = {}): Promise<FakeStage> {
  const requests: RecordedRequest[] = [];
  const scripts = new Map<string, { list: Behaviour[]; repeat: boolean }>();
  const hung = new Map<string, Hung>();

  function next(step: Step, subjectId: string): Behaviour {
    const s = scripts.get(`${subjectId}:${step}`) ?? scripts.get(step);
    if (!s || s.list.length === 0) return {};
    if (s.list.length === 1 && s.repeat) return s.list[0] as Behaviour;
    return s.list.shift() as Behaviour;
  }

  const answer = (res: ServerResponse, rec: RecordedRequest | null, status: number, body: unknown, headers = {}) => {
    if (rec) rec.status = status;
    if (res.writableEnded || res.destroyed) return;
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };

  /** A stage answers only after its finish is written: retried while the database is away (up to 30 s). */
  async function persist(write: () => Promise<boolean>): Promise<boolean> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        return await write();
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = performance.now();
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const route = (req.url ?? '').split('?')[0] as string;
    const step = stepForRoute(route);
    let body: { job_id?: string; tenant_id?: string; job_variants_id?: string; attempt?: number } = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch {
      return answer(res, null, 400, { error: 'invalid JSON' });
    }
    const rec: RecordedRequest = {
      route,
      step,
      jobId: body.job_id ?? '',
      jobVariantsId: body.job_variants_id,
      tenantId: body.tenant_id ?? '',
      attempt: body.attempt,
      authorization: req.headers.authorization,
      at,
      timeoutHeader: req.headers['x-pipeline-timeout-ms'] as string | undefined,
    };
    requests.push(rec);
    fake.onRequest?.(rec);
    if (req.method !== 'POST' || !step) return answer(res, rec, 404, { error: 'no such route' });
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
      return answer(res, rec, 401, { error: 'missing or wrong token' });
    }
    if (!body.job_id || !body.tenant_id) return answer(res, rec, 400, { error: 'job_id and tenant_id required' });
    const b = next(step, body.job_variants_id ?? body.job_id);
    if (b.drop) {
      rec.status = 0;
      req.socket.destroy();
      return;
    }
    const status = b.status ?? 200;
    if (status === 429 || status === 503) {
      return answer(res, rec, status, { error: 'busy' }, b.retryAfter ? { 'retry-after': b.retryAfter } : {});
    }
    if (status >= 400 && status < 500) {
      return answer(res, rec, status, { error: `scripted ${status}`, ...(b.code ? { code: b.code } : {}) });
    }
    if (status >= 500 && b.record === false)
      return answer(res, rec, status, { error: `scripted ${status}, nothing recorded` });
    const subject = { step, jobId: body.job_id, jobVariantsId: body.job_variants_id, attempt: body.attempt };
    let started: Awaited<ReturnType<typeof stageStart>>;
    try {
      started = await stageStart(pool, subject);
    } catch (err) {
      // The database is away (a test restarts it): nothing was started, as far as we know.
      return answer(res, rec, 503, { error: `database unavailable: ${(err as Error).message}` });
    }
    if (!started.started) {
      if (!started.state) return answer(res, rec, 404, { error: 'no such job', code: 'job_not_found' });
      return answer(res, rec, 409, { error: 'not ready', state: started.state });
    }
    if (b.hang) {
      hung.set(body.job_variants_id ?? body.job_id, {
        step,
        jobId: body.job_id,
        jobVariantsId: body.job_variants_id,
        attempt: started.attempt,
        res,
      });
      return;
    }
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    const finish = { step, jobId: body.job_id, jobVariantsId: body.job_variants_id, attempt: started.attempt };
    if (status >= 500) {
      await persist(() => stageFinishFailed(pool, { ...finish, error: `scripted failure ${status}` }));
      return answer(res, rec, status, { error: `scripted failure ${status}` });
    }
    const ok = await persist(() => stageFinishDone(pool, finish));
    return answer(res, rec, ok ? 200 : 409, { ok, step, attempt: started.attempt });
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        res.writeHead(500);
        res.end(String(err));
      }
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  let listening = true;

  const fake: FakeStage = {
    url: `http://127.0.0.1:${port}`,
    requests,
    calls: (step, subjectId) =>
      requests.filter((r) => r.step === step && (!subjectId || (r.jobVariantsId ?? r.jobId) === subjectId)),
    script: (step, behaviours, o = {}) =>
      scripts.set(o.subject ? `${o.subject}:${step}` : step, { list: [...behaviours], repeat: o.repeat ?? false }),
    finishHung: async (subjectId, outcome = 'done') => {
      const h = hung.get(subjectId);
      if (!h) throw new Error(`no hung request for ${subjectId}`);
      hung.delete(subjectId);
      const f = { step: h.step, jobId: h.jobId, jobVariantsId: h.jobVariantsId, attempt: h.attempt };
      const ok =
        outcome === 'done' ? await stageFinishDone(pool, f) : await stageFinishFailed(pool, { ...f, error: 'late' });
      answer(h.res, null, ok ? 200 : 409, { ok });
      return ok;
    },
    down: async () => {
      if (!listening) return;
      listening = false;
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
    up: async () => {
      if (listening) return;
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
      listening = true;
    },
    close: async () => {
      for (const h of hung.values()) h.res.destroy();
      hung.clear();
      server.closeAllConnections();
      if (listening) await new Promise<void>((r) => server.close(() => r()));
      listening = false;
    },
  };
  return fake;
}

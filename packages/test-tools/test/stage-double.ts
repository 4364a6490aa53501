/**
 * A small stage double for the CLI's tests: every stage route does what the
 * real stage does to the state machine (pipeline-core's guarded stageStart
 * and stageFinishDone against the real database) without the model work,
 * and answers 200; every request is recorded. No /healthz: it is not a
 * stage server, so `status` must find the listener elsewhere.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { stageFinishDone, stageStart, type Step, stepForRoute } from '@feedlyai/pipeline-core';
import type pg from 'pg';

export interface StageRequest {
  step: Step;
  jobId: string;
  jobVariantsId: string | undefined;
  attempt: number | undefined;
  status: number;
}

export interface StageDouble {
  url: string;
  requests: StageRequest[];
  close(): Promise<void>;
}

export async function startStageDouble(pool: pg.Pool): Promise<StageDouble> {
  const requests: StageRequest[] = [];
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const step = stepForRoute((req.url ?? '').split('?')[0] as string);
    if (req.method !== 'POST' || !step) return send(res, 404, { error: 'no such route' });
    let body: { job_id?: string; job_variants_id?: string; attempt?: number };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return send(res, 400, { error: 'invalid JSON' });
    }
    if (!body.job_id) return send(res, 400, { error: 'job_id required' });
    const rec: StageRequest = {
      step,
      jobId: body.job_id,
      jobVariantsId: body.job_variants_id,
      attempt: body.attempt,
      status: 0,
    };
    requests.push(rec);
    const subject = { step, jobId: body.job_id, jobVariantsId: body.job_variants_id };
    const started = await stageStart(pool, { ...subject, attempt: body.attempt });
    if (!started.started) {
      rec.status = started.state ? 409 : 404;
      return send(
        res,
        rec.status,
        started.state ? { error: 'not ready' } : { error: 'no such job', code: 'job_not_found' },
      );
    }
    const ok = await stageFinishDone(pool, { ...subject, attempt: started.attempt });
    rec.status = ok ? 200 : 409;
    return send(res, rec.status, { ok, step, attempt: started.attempt });
  }
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { error: String(err) });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

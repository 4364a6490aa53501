/**
 * Found by the chaos suite: the dispatcher's re-sends (busy 429/503 answers,
 * connection errors) were not bounded by the step's timeout, so a claimed
 * attempt could still be sent after the step's rescue timeout, when the
 * rescue has already dispatched the next attempt: a second request at the
 * stage for one (subject, step), answered 409. CONTRACTS: "The dispatcher's
 * timeout for a step is shorter than that step's rescue timeout" holds only
 * if the timeout bounds the whole send, re-sends and the wait for a slot
 * included. These tests pin that.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { type ClaimedStep, StageDispatcher } from '@feedlyai/pipeline-core';
import t from 'tap';

const claimed: ClaimedStep = {
  jobId: '00000000-0000-4000-8000-000000000001',
  tenantId: 'tenant',
  jobVariantsId: '00000000-0000-4000-8000-000000000002',
  step: 'vlm_analyze',
  attempt: 1,
  runId: '1',
  trigger: 'notify',
};

async function server(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const arrivals: number[] = [];
  const srv = createServer((req, res) => {
    arrivals.push(performance.now());
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    arrivals,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

t.test('busy answers are not re-sent past the step timeout', async (t) => {
  const s = await server((_req, res) => {
    res.writeHead(503, { 'retry-after': '1', 'content-type': 'application/json' });
    res.end('{"error":"busy"}');
  });
  t.teardown(() => s.close());
  const d = new StageDispatcher({ stageApiUrl: s.url });
  t.teardown(() => d.close());
  const t0 = performance.now();
  const out = await d.send({ claimed, route: '/api/yh/llava/stage1/validate', timeoutMs: 1_500 });
  const took = performance.now() - t0;
  t.equal(out.kind, 'timeout', 'left to rescue once the step timeout is spent');
  t.ok(took < 2_500, `returned at the deadline (${Math.round(took)} ms)`);
  t.ok(s.arrivals.length >= 1 && s.arrivals.length <= 2, `re-sent within the timeout only (${s.arrivals.length})`);
  t.ok(
    s.arrivals.every((a) => a - t0 <= 1_500),
    'no request reached the stage after the step timeout',
  );
});

t.test('a call that waited for a slot past its timeout is not sent', async (t) => {
  let hold: (() => void) | null = null;
  const s = await server((_req, res) => {
    hold = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    };
  });
  t.teardown(() => s.close());
  const d = new StageDispatcher({ stageApiUrl: s.url, maxInFlight: 1 });
  t.teardown(() => d.close());
  const first = d.send({ claimed, route: '/a', timeoutMs: 5_000 });
  const t0 = performance.now();
  const second = d.send({ claimed: { ...claimed, attempt: 2 }, route: '/b', timeoutMs: 300 });
  // Release the first call only after the second one's timeout.
  await new Promise((r) => setTimeout(r, 600));
  (hold as (() => void) | null)?.();
  t.equal((await first).kind, 'succeeded');
  const out = await second;
  t.equal(out.kind, 'timeout', 'the queued call gave up at its deadline');
  t.equal(s.arrivals.length, 1, 'only the first call reached the stage');
  t.ok(performance.now() - t0 < 2_000);
});

t.test('a busy stage that recovers within the timeout still gets the same attempt', async (t) => {
  let n = 0;
  const s = await server((_req, res) => {
    n++;
    if (n === 1) {
      res.writeHead(503, { 'retry-after': '0.2', 'content-type': 'application/json' });
      res.end('{"error":"busy"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  t.teardown(() => s.close());
  const d = new StageDispatcher({ stageApiUrl: s.url });
  t.teardown(() => d.close());
  const out = await d.send({ claimed, route: '/x', timeoutMs: 2_000 });
  t.equal(out.kind, 'succeeded');
  t.equal(s.arrivals.length, 2);
});

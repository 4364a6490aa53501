// A LISTEN connection that dies silently (no FIN, no RST: the packets just stop)
// is noticed by the liveness query, replaced, and the missed transitions swept.
import { createServer, type Server, type Socket, connect } from 'node:net';
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, isJobDone, markImgGenDone, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

/** A TCP proxy to PostgreSQL that can freeze its current connections (silently drop everything). */
async function startProxy(target: URL): Promise<{ url: string; freeze(): void; close(): Promise<void> }> {
  const live = new Set<{ a: Socket; b: Socket; frozen: boolean }>();
  const server: Server = createServer((a) => {
    const b = connect(Number(target.port || 5432), target.hostname);
    const pair = { a, b, frozen: false };
    live.add(pair);
    a.on('data', (d) => {
      if (!pair.frozen) b.write(d);
    });
    b.on('data', (d) => {
      if (!pair.frozen) a.write(d);
    });
    const end = () => {
      live.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on('close', end);
    b.on('close', end);
    a.on('error', end);
    b.on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const u = new URL(target.toString());
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return {
    url: u.toString(),
    freeze: () => {
      for (const p of live) p.frozen = true;
    },
    close: async () => {
      for (const p of live) {
        p.a.destroy();
        p.b.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

t.test('a silently dead LISTEN connection is detected by the liveness query and replaced', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const proxy = await startProxy(new URL(db.url));
  t.teardown(() => proxy.close());
  const { app, logs } = await buildApp({
    connectionString: proxy.url,
    stageApiUrl: stage.url,
    recoveryIntervalMs: 3_600_000,
    livenessIntervalMs: 200,
    livenessTimeoutMs: 500,
    reconnectDelayMs: 200,
  });
  t.teardown(() => app.close());
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  proxy.freeze(); // every connection open now (LISTEN and pool) goes silent
  const s = await seedJob(db.pool, { variants: 2 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => app.jobStateListener.status().reconnects >= 1, { timeoutMs: 30_000, message: 'reconnected' });
  t.ok(
    logs.some((l) => l.msg === 'listener error' && /liveness/.test(String(l.err))),
    'liveness failure logged',
  );
  await waitFor(() => isJobDone(db.pool, s.jobId), { timeoutMs: 60_000, message: 'missed transitions swept' });
  t.equal(stage.calls('vlm_analyze').filter((r) => r.jobId === s.jobId).length, 2, 'each variant dispatched once');
});

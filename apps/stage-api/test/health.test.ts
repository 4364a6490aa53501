/**
 * /livez and /readyz beside /healthz (docs/stage-api.md, "Health"): readiness
 * needs the database, the migrations and every configured model server; a
 * configured model server that cannot be reached is not ready; a flood of
 * probes reaches the model servers at most once per 5 s (the real cache
 * duration, measured here with a counting double).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import t, { type Test } from 'tap';
import { freePort, tempStorage, testApp, testDb, waitFor } from './helpers.js';

/** An OpenAI-compatible model server that only counts the requests it gets (GET /v1/models answers 200). */
async function countingModelServer(t: Test): Promise<{ url: string; count: () => number }> {
  let n = 0;
  const server: Server = createServer((req, res) => {
    n++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"object":"list","data":[]}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, count: () => n };
}

t.test('/livez answers while the process serves, without a token', async (t) => {
  const db = await testDb(t);
  const app = await testApp(t, db, await tempStorage(t), { token: 'secret-token' });
  const r = await app.inject({ method: 'GET', url: '/livez' });
  t.equal(r.statusCode, 200);
  t.same(r.json(), { status: 'ok' });
});

t.test('/readyz: ready with a migrated database and no model server configured', async (t) => {
  const db = await testDb(t);
  const app = await testApp(t, db, await tempStorage(t), { token: 'secret-token' });
  const r = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(r.statusCode, 200, 'no token needed');
  t.match(r.json(), {
    status: 'ready',
    failing: [],
    checks: {
      database: { ok: true },
      migrations: { ok: true },
      stage_migrations: { ok: true, current: 2, expected: 2 },
      warmup: { ok: true, state: 'off' },
      vlm: { configured: false, ok: true },
      llm: { configured: false, ok: true },
      yolo: { configured: false, ok: true },
    },
  });
});

t.test('100 probes reach the model server at most once in 5 s; /healthz shares the cache', async (t) => {
  const db = await testDb(t);
  const model = await countingModelServer(t);
  const app = await testApp(t, db, await tempStorage(t), {
    env: { VLM_BASE_URL: model.url, LLM_BASE_URL: model.url },
  });
  const first = performance.now();
  const answers = await Promise.all(Array.from({ length: 50 }, () => app.inject({ method: 'GET', url: '/readyz' })));
  for (let i = 0; i < 50; i++) answers.push(await app.inject({ method: 'GET', url: '/readyz' }));
  for (let i = 0; i < 10; i++) await app.inject({ method: 'GET', url: '/healthz' });
  const elapsed = performance.now() - first;
  t.ok(elapsed < 5_000, `the probes took ${Math.round(elapsed)} ms (under the cache's 5 s)`);
  t.ok(
    answers.every((a) => a.statusCode === 200),
    'all ready',
  );
  t.match(answers[0]?.json(), { checks: { vlm: { configured: true, ok: true }, llm: { configured: true, ok: true } } });
  // VLM and LLM are two servers here on one double: one ping each per check.
  t.equal(model.count(), 2, '100 /readyz and 10 /healthz: one ping of each model server');

  // After 5 s the next probe checks again (polled, not slept: the cache's own timer is what is measured).
  await waitFor(
    async () => {
      await app.inject({ method: 'GET', url: '/readyz' });
      return model.count() > 2;
    },
    { timeoutMs: 15_000, intervalMs: 100, message: 'checked again' },
  );
  const again = performance.now() - first;
  t.ok(again >= 4_900, `checked again after ${Math.round(again)} ms, not before 5 s`);
  t.equal(model.count(), 4, 'one more ping of each');
});

t.test('a configured model server that cannot be reached is not ready; /healthz keeps its shape', async (t) => {
  const db = await testDb(t);
  const closed = await freePort();
  const app = await testApp(t, db, await tempStorage(t), {
    env: { VLM_BASE_URL: `http://127.0.0.1:${closed}/v1` },
  });
  const r = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(r.statusCode, 503);
  t.match(r.json(), {
    status: 'not_ready',
    failing: ['vlm'],
    checks: { vlm: { configured: true, ok: false, detail: /ECONNREFUSED|connect/ }, database: { ok: true } },
  });
  const h = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(h.statusCode, 200, '/healthz: the database answers');
  t.match(h.json(), {
    status: 'ok',
    database: { ok: true },
    backends: { vlm: { mode: 'model', reachable: false }, llm: { mode: 'fallback' } },
  });
});

t.test('an unreachable database is not ready', async (t) => {
  const closed = await freePort();
  const pool = new pg.Pool({ connectionString: `postgres://nobody@127.0.0.1:${closed}/none`, max: 1 });
  t.teardown(() => pool.end());
  const app = await testApp(t, { pool } as never, await tempStorage(t));
  const r = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(r.statusCode, 503);
  t.match(r.json(), { status: 'not_ready', failing: ['database', 'migrations', 'stage_migrations'] });
  t.equal((await app.inject({ method: 'GET', url: '/livez' })).statusCode, 200, 'still live');
});

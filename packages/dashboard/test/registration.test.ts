/**
 * Registration (docs/dashboard.md, "Registering it"): an auth hook or an
 * explicit allowAnonymous, else an error at registration naming both; an
 * encapsulated plugin that leaves the host's routes, decorators and 404
 * alone; the host's hook runs first on every dashboard route (pages, events,
 * images, static files, actions) and a request it rejects gets nothing of the
 * dashboard; the database from the pool option, @fastify/postgres (default
 * or named) or a connection string; everything it opened closed by close().
 */
import fastifyCookie from '@fastify/cookie';
import fastifyPostgres from '@fastify/postgres';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import pg from 'pg';
import t from 'tap';
import { dashboard } from '../src/index.js';
import { seedJob, testDb, waitFor } from './helpers.js';
import { openSse } from './sse-client.js';

const db = await testDb();
t.teardown(() => db.close());
const job = await seedJob(db.pool, { variants: 1, imageUrl: 'uploads/none.png' });

/** The app's boot as a promise t.rejects accepts. */
const ready = (app: { ready(): PromiseLike<unknown> }) => async () => {
  await app.ready();
};

async function connections(like: string): Promise<number> {
  const r = await db.pool.query(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1',
    [like],
  );
  return r.rows[0].n;
}

t.test('without onRequest or allowAnonymous: true, registration fails naming both', async (t) => {
  for (const opts of [{}, { allowAnonymous: false }, { onRequest: 'yes' }]) {
    const app = Fastify({ logger: false });
    app.register(dashboard, { prefix: '/pipeline', connectionString: db.url, ...(opts as object) });
    await t.rejects(
      ready(app),
      /@feedlyai\/dashboard: .*(onRequest.*allowAnonymous: true|option onRequest: must be a function)/,
      JSON.stringify(opts),
    );
    await app.close();
  }
  const bad = Fastify({ logger: false });
  bad.register(dashboard, { allowAnonymous: true, connectionString: db.url, ringSize: -1 });
  await t.rejects(ready(bad), /option ringSize/);
  await bad.close();
  const noDb = Fastify({ logger: false });
  noDb.register(dashboard, { allowAnonymous: true, env: {} });
  await t.rejects(
    ready(noDb),
    /no database: pass the pool or connectionString option, register @fastify\/postgres, or set DATABASE_URL/,
  );
  await noDb.close();
});

const authHook = async (req: FastifyRequest, reply: FastifyReply) => {
  if (req.headers.authorization !== 'Bearer let-me-in') {
    return reply.code(401).send({ error: 'the host says no' });
  }
};

t.test("the host's hook runs first everywhere; a rejected request gets nothing", async (t) => {
  const app = Fastify({ logger: false });
  app.get('/host', async () => ({ host: true }));
  await app.register(dashboard, { prefix: '/pipeline', onRequest: authHook, connectionString: db.url });
  t.teardown(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address();
  const base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  const ok = { authorization: 'Bearer let-me-in' };

  const urls = [
    '/pipeline/',
    '/pipeline/help',
    `/pipeline/jobs/${job.jobId}`,
    `/pipeline/jobs/${job.jobId}/row`,
    '/pipeline/api/jobs',
    '/pipeline/throughput',
    `/pipeline/images/${job.imageAssetId}`,
    `/pipeline/images/${job.imageAssetId}/thumb`,
    '/pipeline/static/app/dashboard.css',
    '/pipeline/static/htmx/htmx.min.js',
    '/pipeline/static/uplot/uPlot.iife.min.js',
    '/pipeline/static/pretendard/pretendardvariable-dynamic-subset.css',
    '/pipeline/retry-failed',
    '/pipeline/no-such-page',
  ];
  for (const url of urls) {
    const res = await app.inject({ url });
    t.equal(res.statusCode, 401, `${url}: rejected`);
    t.same(res.json(), { error: 'the host says no' }, `${url}: the host's answer and nothing of the dashboard`);
    t.notOk(res.headers['set-cookie'], `${url}: no cookie`);
  }
  for (const url of [
    `/pipeline/jobs/${job.jobId}/retry`,
    `/pipeline/jobs/${job.jobId}/cancel`,
    '/pipeline/retry-failed',
  ]) {
    const res = await app.inject({ method: 'POST', url });
    t.equal(res.statusCode, 401, `POST ${url}: the hook before the CSRF check`);
  }
  const sse = await openSse(`${base}/pipeline/events`);
  await waitFor(() => sse.ended, { timeoutMs: 5_000, message: 'a rejected event stream ends at once' });
  t.equal(sse.status, 401, 'events: rejected');
  t.same(sse.events, [], 'no event');

  const page = await app.inject({ url: '/pipeline/', headers: ok });
  t.equal(page.statusCode, 200, 'accepted by the hook: the page');
  t.match(page.headers['content-security-policy'], /script-src 'self'/);
  for (const url of urls.slice(8, 12)) {
    t.equal((await app.inject({ url, headers: ok })).statusCode, 200, `${url}: served from node_modules`);
  }
  const font = /url\(\.\/(woff2-dynamic-subset\/[^)]+\.woff2)\)/.exec(
    (await app.inject({ url: '/pipeline/static/pretendard/pretendardvariable-dynamic-subset.css', headers: ok })).body,
  )?.[1];
  t.ok(font, 'the Pretendard stylesheet names its font files');
  const woff = await app.inject({ url: `/pipeline/static/pretendard/${font}`, headers: ok });
  t.equal(woff.statusCode, 200, 'and they are served too');
  t.match(woff.headers['content-type'], /font\/woff2/);
  const allowed = await openSse(`${base}/pipeline/events`, ok);
  t.teardown(() => allowed.close());
  t.equal(allowed.status, 200, 'accepted by the hook: the stream');

  // Encapsulation: the host's own routes and instance are untouched.
  const host = await app.inject({ url: '/host' });
  t.same(host.json(), { host: true });
  t.notOk(host.headers['content-security-policy'], "the dashboard's headers stay inside it");
  const missing = await app.inject({ url: '/nothing-here' });
  t.equal(missing.statusCode, 404);
  t.match(missing.json(), { message: 'Route GET:/nothing-here not found' }, "the host's own 404");
  t.notOk(app.hasDecorator('parseCookie'), 'no cookie decorator on the host');
  t.notOk(app.hasReplyDecorator('generateCsrf'), 'no CSRF decorator on the host');
  t.notOk(app.hasReplyDecorator('dashboardView'), 'no view decorator on the host');
});

t.test("the database: the host's @fastify/postgres, a named one, or the pool option", async (t) => {
  const hostDefault = Fastify({ logger: false });
  await hostDefault.register(dashboard, { prefix: '/p', allowAnonymous: true, env: {} });
  await hostDefault.register(fastifyPostgres, { connectionString: db.url, application_name: 'host_pool_default' });
  await hostDefault.ready();
  t.equal((await hostDefault.inject({ url: '/p/api/jobs' })).statusCode, 200, '@fastify/postgres registered after it');
  t.equal(await connections('pipeline_dashboard_pages'), 0, 'no pool of its own');
  t.equal(await connections('pipeline_dashboard'), 1, 'its LISTEN client, checked out of the host pool and renamed');
  await hostDefault.close();
  t.equal(await connections('pipeline_dashboard'), 0, 'given back (destroyed) on close');

  const named = Fastify({ logger: false });
  await named.register(fastifyPostgres, { connectionString: db.url, name: 'reports' });
  await named.register(dashboard, { prefix: '/p', allowAnonymous: true, pgName: 'reports', env: {} });
  await named.ready();
  t.equal((await named.inject({ url: '/p/api/jobs' })).statusCode, 200, 'a named @fastify/postgres');
  await named.close();
  const wrongName = Fastify({ logger: false });
  await wrongName.register(dashboard, { prefix: '/p', allowAnonymous: true, pgName: 'nope', env: {} });
  await t.rejects(ready(wrongName), /option pgName: no @fastify\/postgres registration named 'nope'/);
  await wrongName.close();

  const pool = new pg.Pool({ connectionString: db.url, max: 3 });
  // end() resolves before the sockets close; the database's DROP ... WITH (FORCE) must not crash the process.
  pool.on('error', () => {});
  const own = Fastify({ logger: false });
  await own.register(dashboard, { prefix: '/p', allowAnonymous: true, pool, env: {} });
  await own.ready();
  t.equal((await own.inject({ url: '/p/api/jobs' })).statusCode, 200, 'the pool option');
  await own.close();
  t.equal(pool.totalCount - pool.idleCount, 0, 'the LISTEN client went back to (was destroyed in) the host pool');
  await pool.query('SELECT 1');
  t.pass('the host pool is still open: it is not the dashboard to close');
  await pool.end();
});

t.test('a host that registered @fastify/cookie first: the dashboard uses it', async (t) => {
  const app = Fastify({ logger: false });
  await app.register(fastifyCookie);
  app.get('/host-cookie', async (req) => ({ seen: req.cookies.host ?? null }));
  await app.register(dashboard, { prefix: '/pipeline', allowAnonymous: true, connectionString: db.url });
  t.teardown(() => app.close());
  await app.ready();
  const page = await app.inject({ url: '/pipeline/' });
  t.equal(page.statusCode, 200);
  t.ok(
    page.cookies.some((c) => c.name === 'pipeline_dashboard_csrf'),
    'its CSRF cookie',
  );
  t.same((await app.inject({ url: '/host-cookie', cookies: { host: 'x' } })).json(), { seen: 'x' });
});

t.test('close() leaves nothing of the dashboard open', async (t) => {
  const app = Fastify({ logger: false });
  await app.register(dashboard, { prefix: '/pipeline', allowAnonymous: true, connectionString: db.url });
  await app.ready();
  await app.inject({ url: '/pipeline/' });
  t.ok((await connections('pipeline_dashboard%')) >= 2, 'its LISTEN connection and its pages pool while open');
  await app.close();
  await waitFor(async () => (await connections('pipeline_dashboard%')) === 0, { timeoutMs: 5_000 });
  t.pass('no connection named pipeline_dashboard* left');
  await app.close();
  t.pass('closing twice is fine');
});

// The plugin on the host's own pool (docs/integration.md): the `pool` option
// and a named @fastify/postgres registration (`pgName`). The LISTEN connection
// is one client checked out of that pool, renamed job_state_listener; only the
// pool's public connect() and query() and the client's query(), on() and
// release() are used.
import fastifyPostgres from '@fastify/postgres';
import Fastify from 'fastify';
import pg from 'pg';
import t from 'tap';
import { jobStateListener } from '../src/index.js';
import { startFakeStage } from './fake-stage.js';
import { FAST, markImgGenDone, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const stage = await startFakeStage(db.pool);
t.teardown(() => stage.close());

async function listenerPids(): Promise<number[]> {
  const r = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'job_state_listener' ORDER BY pid`,
  );
  return r.rows.map((row) => row.pid);
}

async function registeredPid(instanceId: string): Promise<number | undefined> {
  const r = await db.pool.query<{ listener_pid: number }>(
    'SELECT listener_pid FROM pipeline_instances WHERE instance_id = $1',
    [instanceId],
  );
  return r.rows[0]?.listener_pid;
}

/** Seeds a one-variant job past img_gen and waits for its first stage call. */
async function dispatchesAJob(): Promise<void> {
  const s = await seedJob(db.pool, { variants: 1 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => stage.calls('vlm_analyze', s.variantIds[0]).length === 1, {
    timeoutMs: 30_000,
    message: 'the job dispatched to its first stage',
  });
}

/**
 * `target` behind a proxy that records every property read from outside (methods are bound to
 * the target, so pg's own reads of its internals are not recorded); `wrap` wraps results.
 */
function spy<T extends object>(target: T, reads: Set<string>, wrap?: (prop: string, v: unknown) => unknown): T {
  return new Proxy(target, {
    get(obj, prop) {
      reads.add(String(prop));
      const v = Reflect.get(obj, prop, obj);
      const bound = typeof v === 'function' ? v.bind(obj) : v;
      return wrap ? wrap(String(prop), bound) : bound;
    },
  });
}

t.test(
  'pool option only: LISTEN on one client of the host pool, named job_state_listener, back after pg_terminate_backend',
  async (t) => {
    const hostPool = new pg.Pool({ connectionString: db.url, max: 5, application_name: 'host_app' });
    hostPool.on('error', () => {}); // the terminated LISTEN client is the pool's to drop
    t.teardown(() => hostPool.end());
    const poolReads = new Set<string>();
    const clientReads = new Set<string>();
    // The argument of every release() of a client the plugin checked out: the LISTEN client must be
    // destroyed (release(true)), never handed back to the host's pool LISTENing and renamed.
    const releases: unknown[] = [];
    const recordRelease = (prop: string, v: unknown) =>
      prop === 'release'
        ? (...args: unknown[]) => {
            releases.push(args[0]);
            return (v as (...a: unknown[]) => unknown)(...args);
          }
        : v;
    const pool = spy(hostPool, poolReads, (prop, v) =>
      prop === 'connect' ? async () => spy(await (v as () => Promise<pg.PoolClient>)(), clientReads, recordRelease) : v,
    );
    const app = Fastify();
    await app.register(jobStateListener, { ...FAST, pool, stageApiUrl: stage.url, instanceId: 'host-pool-0' });
    await app.ready();

    const [pid] = await waitFor(async () => {
      const pids = await listenerPids();
      return pids.length === 1 ? pids : null;
    });
    t.equal(await registeredPid('host-pool-0'), pid, 'the registered pid is the LISTEN connection');
    // A sweep may hold a client for a moment; the LISTEN client stays checked out.
    await waitFor(() => hostPool.totalCount - hostPool.idleCount === 1, {
      timeoutMs: 10_000,
      message: 'one client of the host pool kept checked out',
    });
    const own = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'job_state_listener_dispatch'`,
    );
    t.equal(own.rows[0].n, 0, 'no pool of its own');
    await dispatchesAJob();

    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    const [next] = await waitFor(
      async () => {
        const pids = await listenerPids();
        return pids.length === 1 && pids[0] !== pid ? pids : null;
      },
      { timeoutMs: 30_000, message: 'a new LISTEN connection' },
    );
    t.not(next, pid, 'a new job_state_listener connection after pg_terminate_backend');
    await waitFor(async () => (await registeredPid('host-pool-0')) === next, {
      timeoutMs: 10_000,
      message: 'the new pid registered',
    });
    t.ok(app.jobStateListener.status().reconnects >= 1, 'counted as a reconnect');
    // The reconnect sweep may hold a client for a moment; the dead one must not stay checked out.
    await waitFor(() => hostPool.totalCount - hostPool.idleCount === 1, {
      timeoutMs: 10_000,
      message: 'the dead client released: one client checked out',
    });
    t.pass('the dead client was released; one client checked out');
    t.ok(releases.includes(true), `the dead LISTEN client was destroyed with release(true) (${releases.join(', ')})`);
    const destroyedBeforeClose = releases.filter((r) => r === true).length;
    await dispatchesAJob();

    await app.close();
    await waitFor(async () => (await listenerPids()).length === 0, { timeoutMs: 10_000, message: 'LISTEN closed' });
    t.equal(hostPool.totalCount - hostPool.idleCount, 0, 'no client of the host pool left checked out');
    t.equal(
      releases.filter((r) => r === true).length,
      destroyedBeforeClose + 1,
      'at close, the LISTEN client is destroyed too (release(true)), not returned to the pool',
    );
    await hostPool.query('SELECT 1');
    t.pass("the host's pool is still the host's: open and working");

    t.same(
      [...poolReads].sort(),
      ['connect', 'query'],
      'only connect() and query() read from the pool (no options, no internals)',
    );
    // `then`: the spy's own async wrapper hands the client over through a promise.
    t.same(
      [...clientReads].filter((p) => !['query', 'on', 'release', 'then'].includes(p)),
      [],
      `only query(), on() and release() read from its clients (read: ${[...clientReads].join(', ')})`,
    );
  },
);

for (const when of ['before', 'after'] as const) {
  t.test(`pgName: a named @fastify/postgres registered ${when} the plugin`, async (t) => {
    const app = Fastify();
    // The default registration points nowhere: the plugin must use the named one.
    const nowhere = 'postgres://nobody@127.0.0.1:1/none';
    const registerPg = () => {
      app.register(fastifyPostgres, { connectionString: nowhere });
      app.register(fastifyPostgres, { name: 'pipeline', connectionString: db.url });
    };
    if (when === 'before') registerPg();
    app.register(jobStateListener, { ...FAST, pgName: 'pipeline', stageApiUrl: stage.url });
    if (when === 'after') registerPg();
    await app.ready();
    t.ok(app.jobStateListener.status().connected, 'LISTEN connected');
    await waitFor(async () => (await listenerPids()).length === 1, { timeoutMs: 10_000 });
    await dispatchesAJob();
    await app.close();
    await waitFor(async () => (await listenerPids()).length === 0, { timeoutMs: 10_000, message: 'LISTEN closed' });
  });
}

t.test('a pgName without such a registration, or two database options, fail with a clear message', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ pgName: 'missing' }, /option pgName: no @fastify\/postgres registration named 'missing'/],
    [{ pgName: 'x', connectionString: db.url }, /give one of connectionString, pool and pgName/],
    [{ pool: new pg.Pool(), connectionString: db.url }, /give one of connectionString, pool and pgName/],
    [{ pool: { connect: 1 } }, /option pool: must be a pg.Pool/],
  ];
  for (const [opts, msg] of cases) {
    const app = Fastify();
    app.register(fastifyPostgres, { connectionString: db.url });
    app.register(jobStateListener, { ...FAST, stageApiUrl: stage.url, ...opts } as never);
    await t.rejects(
      async () => {
        await app.ready();
      },
      msg,
      JSON.stringify(Object.keys(opts)),
    );
    await app.close().catch(() => {});
  }
  t.same(await listenerPids(), [], 'nothing left open');
});

// migrate() with a pool from another copy of `pg` (pg is a peer dependency: the
// host's copy is not necessarily ours). `pg-copy` is a second, separately
// installed copy (an alias devDependency on another version).
import { createRequire } from 'node:module';
import pg from 'pg';
import t from 'tap';
import { isPool, LATEST_MIGRATION, migrate } from '../src/migrate.js';
import { testDb } from './helpers.js';

const require = createRequire(import.meta.url);
const pgCopy = require('pg-copy') as typeof pg;

t.test('pg-copy is another copy of pg, so instanceof cannot tell its pools', async (t) => {
  const pool = new pgCopy.Pool();
  t.teardown(() => pool.end());
  t.not(pgCopy.Pool, pg.Pool, 'a different Pool class');
  t.notOk(pool instanceof pg.Pool);
  t.ok(isPool(pool), 'recognised as a pool by its shape');
  t.ok(isPool(new pg.Pool()), 'our own pools too');
  t.notOk(isPool(new pgCopy.Client()), 'a client is not a pool');
  t.notOk(isPool(new pg.Client()), 'nor is one of ours');
  t.notOk(isPool('postgres://x'));
  t.notOk(isPool(null));
});

t.test("two concurrent migrators on another pg copy's pools apply each migration once", async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  await db.pool.query('DROP TABLE feedly_migrations');
  const pools = [0, 1].map(() => new pgCopy.Pool({ connectionString: db.url, max: 4 }));
  // pool.end() resolves before its clients' sockets close: the database's DROP ... WITH (FORCE) at close
  // may still reach one, and a pool error without a listener would crash the test process.
  for (const p of pools) p.on('error', () => {});
  t.teardown(() => Promise.all(pools.map((p) => p.end())));
  // The host's pools are busy serving other queries meanwhile. Taken for a client, a pool
  // would run BEGIN, the lock and each statement on whichever connection is free: no
  // transaction, no lock, and both migrators would apply the same migrations.
  let busy = true;
  const traffic = pools.flatMap((p) =>
    [0, 1, 2].map(async () => {
      while (busy) await p.query('SELECT pg_sleep(0.002)');
    }),
  );
  const results = await Promise.all(pools.map((p) => migrate(p))).finally(() => {
    busy = false;
  });
  await Promise.all(traffic);
  const applied = results.flatMap((r) => r.applied).sort((a, b) => a - b);
  t.same(
    applied,
    Array.from({ length: LATEST_MIGRATION }, (_, i) => i + 1),
    'every migration applied exactly once across the two migrators',
  );
  t.same(
    results.map((r) => r.current),
    [LATEST_MIGRATION, LATEST_MIGRATION],
  );
  const rows = await db.pool.query<{ n: number; d: number }>(
    'SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM feedly_migrations',
  );
  t.same(rows.rows[0], { n: LATEST_MIGRATION, d: LATEST_MIGRATION }, 'one row per migration');
  for (const p of pools) t.equal(p.totalCount - p.idleCount, 0, 'every checked-out client was released');
});

t.test("migrate() runs on one connection checked out of another pg copy's pool", async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  await db.pool.query('DROP TABLE feedly_migrations');
  const pool = new pgCopy.Pool({ connectionString: db.url, max: 4 });
  pool.on('error', () => {}); // see above: a terminated idle client after end()
  t.teardown(() => pool.end());
  const calls = { connect: 0, query: 0 };
  const connect = pool.connect.bind(pool);
  const query = pool.query.bind(pool);
  Object.assign(pool, {
    connect: () => {
      calls.connect++;
      return connect();
    },
    query: (...args: Parameters<typeof query>) => {
      calls.query++;
      return query(...args);
    },
  });
  const r = await migrate(pool);
  t.equal(r.current, LATEST_MIGRATION);
  t.same(calls, { connect: 1, query: 0 }, 'one client checked out; no statement sent to the pool itself');
});

/**
 * The harness on real PostgreSQL servers (docs/testing.md): databases of one
 * run share the run's server and one migrated template, each database is
 * isolated, a half-built template is rebuilt, `ownServer` restarts.
 */
import pg from 'pg';
import t from 'tap';
import { createTestDatabase } from '../src/index.js';

t.test('databases of one run share the server and the migrated template; each is isolated', async (t) => {
  let migrations = 0;
  const migrate = async (url: string) => {
    migrations++;
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('CREATE TABLE migrated (id int)');
    await c.end();
  };
  const [a, b] = await Promise.all([
    createTestDatabase({ migrate, template: 'isolation' }),
    createTestDatabase({ migrate, template: 'isolation' }),
  ]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  t.equal(migrations, 1, 'migrated once, on the template');
  t.not(a.database, b.database, 'two databases');
  t.equal(new URL(a.url).port, new URL(b.url).port, 'on one server');
  await a.pool.query('INSERT INTO migrated VALUES (1)');
  const inB = await b.pool.query('SELECT count(*)::int AS n FROM migrated');
  t.equal(inB.rows[0].n, 0, 'a row written in one database is not in the other');
  t.equal(a.server, null, 'no server of its own');
  await t.rejects(a.restartServer(), /ownServer: true/, 'restarting the shared server is refused, with the fix');
});

t.test('close() drops the database and may be called twice', async (t) => {
  const db = await createTestDatabase();
  const serverUrl = new URL(db.url);
  serverUrl.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: serverUrl.toString() });
  await admin.connect();
  t.teardown(() => admin.end());
  const exists = async () =>
    (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [db.database])).rowCount;
  t.equal(await exists(), 1, 'database exists');
  await db.close();
  await db.close();
  t.equal(await exists(), 0, 'database dropped');
});

t.test('a template left half-built (its builder died) is dropped and built again', async (t) => {
  const probe = await createTestDatabase();
  t.teardown(() => probe.close());
  const prefix = probe.database.slice(0, probe.database.lastIndexOf('_'));
  // What a builder that died mid-migration leaves: the database, not marked as a template.
  await probe.pool.query(`CREATE DATABASE ${prefix}_tpl_halfbuilt`);
  const migrate = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('CREATE TABLE complete (id int)');
    await c.end();
  };
  const db = await createTestDatabase({ migrate, template: 'halfbuilt' });
  t.teardown(() => db.close());
  const r = await db.pool.query(`SELECT to_regclass('complete') IS NOT NULL AS ok`);
  t.equal(r.rows[0].ok, true, 'the database has the migrated schema');
});

t.test('ownServer: a server for this database alone, which restartServer restarts', async (t) => {
  const db = await createTestDatabase({ ownServer: true });
  t.teardown(() => db.close());
  t.ok(db.server, 'its own server');
  const before = await db.pool.query('SELECT pg_postmaster_start_time() AS at');
  await db.restartServer();
  const after = await db.pool.query('SELECT pg_postmaster_start_time() AS at');
  t.ok(after.rows[0].at > before.rows[0].at, 'PostgreSQL restarted and the pool reconnects');
});

/**
 * Gives a test file (or one test) its own real, migrated PostgreSQL database
 * (docs/testing.md):
 *
 * - the server is the test run's: one embedded PostgreSQL per `tap` run,
 *   started by the first file that asks and stopped when the run ends
 *   (run-server.ts), or the server TEST_DATABASE_URL names;
 * - `migrate` runs once per run, on a template database; each test database
 *   is `CREATE DATABASE ... TEMPLATE` of it (about 0.1 s instead of a server
 *   start and a migration);
 * - `ownServer: true` starts a server for this database alone, for tests that
 *   restart, stop or kill PostgreSQL itself.
 *
 * `migrate` is passed in (pipeline-core's `migrate`, and whatever migration
 * sets a package's tests need) so that this package depends on no workspace
 * package and every package's tests can use it.
 */
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { type EmbeddedServer, startEmbeddedPostgres } from './embedded.js';
import { runServer } from './run-server.js';

export interface TestDatabase {
  /** Connection URL of this test's own database. */
  url: string;
  database: string;
  /** A small pool on that database, closed by `close()`. */
  pool: pg.Pool;
  /** The server of this database alone (`ownServer: true`), else null. */
  server: EmbeddedServer | null;
  /** Restart PostgreSQL itself (`ownServer: true` only). */
  restartServer(): Promise<void>;
  /** Drop the database (and stop its own server). Safe to call twice. */
  close(): Promise<void>;
}

export type Migrate = (url: string) => Promise<unknown>;

export interface TestDatabaseOptions {
  /** Brings an empty database to the schema the tests need; applied once per run, to the template. */
  migrate?: Migrate;
  /**
   * Name of the template `migrate` is applied to: databases made with the same
   * name share it. Default: derived from `migrate`'s source text.
   */
  template?: string;
  poolMax?: number;
  /** A server for this database alone (tests that restart, stop or kill PostgreSQL). */
  ownServer?: boolean;
  /** Overrides TEST_DATABASE_URL; null: the run's embedded server even when it is set. */
  externalUrl?: string | null;
}

/** Templates this process has made sure of: name -> done. */
const templates = new Map<string, Promise<void>>();

function templateName(prefix: string, opts: TestDatabaseOptions, migrate: Migrate): string {
  const label =
    opts.template?.toLowerCase().replace(/[^a-z0-9_]/g, '_') ??
    createHash('sha256').update(migrate.toString()).digest('hex').slice(0, 12);
  return `${prefix}_tpl_${label}`.slice(0, 63);
}

function withDatabase(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

async function admin<T>(serverUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/**
 * Makes sure the migrated template exists. Files of one run may ask at the
 * same moment: an advisory lock makes one of them build it while the others
 * wait. `IS_TEMPLATE` is set last, so it marks a finished template; a
 * half-built one (its builder died) is dropped and built again.
 */
async function ensureTemplate(serverUrl: string, name: string, migrate: Migrate): Promise<void> {
  await admin(serverUrl, async (c) => {
    await c.query('SELECT pg_advisory_lock(hashtext($1))', [name]);
    try {
      const r = await c.query<{ datistemplate: boolean }>('SELECT datistemplate FROM pg_database WHERE datname = $1', [
        name,
      ]);
      if (r.rows[0]?.datistemplate) return;
      const ident = pg.escapeIdentifier(name);
      if (r.rows[0]) await c.query(`DROP DATABASE ${ident} WITH (FORCE)`);
      await c.query(`CREATE DATABASE ${ident}`);
      await migrate(withDatabase(serverUrl, name));
      // No session may stay on a template: CREATE DATABASE ... TEMPLATE refuses to copy it then.
      await c.query('ALTER DATABASE ' + ident + ' WITH ALLOW_CONNECTIONS false IS_TEMPLATE true');
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
    } finally {
      await c.query('SELECT pg_advisory_unlock(hashtext($1))', [name]);
    }
  });
}

/**
 * `STRATEGY FILE_COPY` where the server has it (PostgreSQL 15+): the copy of a
 * small template as files, about 4 times less PostgreSQL CPU than the default
 * WAL_LOG, which writes every block of it to the WAL (90 against 23 ms per
 * database measured here, for the 8 MB migrated template).
 */
async function copyStrategy(c: pg.Client, serverUrl: string): Promise<string> {
  let known = strategies.get(serverUrl);
  if (known === undefined) {
    const r = await c.query<{ server_version_num: string }>('SHOW server_version_num');
    known = Number(r.rows[0]?.server_version_num) >= 150_000 ? ' STRATEGY FILE_COPY' : '';
    strategies.set(serverUrl, known);
  }
  return known;
}

/** copyStrategy's answer per server (asked once per process, not once per database). */
const strategies = new Map<string, string>();

export async function createTestDatabase(opts: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const external = (opts.externalUrl === undefined ? process.env.TEST_DATABASE_URL : opts.externalUrl) || null;
  const suffix = randomBytes(5).toString('hex');
  let server: EmbeddedServer | null = null;
  let database: string;
  let url: string;
  let drop: (() => Promise<void>) | null = null;

  if (opts.ownServer) {
    server = await startEmbeddedPostgres();
    database = `feedly_test_${suffix}`;
    await server.createDatabase(database);
    url = server.url(database);
    if (opts.migrate) await opts.migrate(url);
  } else {
    const run = await runServer(external);
    database = `${run.prefix}_${suffix}`;
    let template = 'template1';
    if (opts.migrate) {
      const migrate = opts.migrate;
      template = templateName(run.prefix, opts, migrate);
      let ready = templates.get(template);
      if (!ready) {
        ready = ensureTemplate(run.url, template, migrate);
        templates.set(template, ready);
        ready.catch(() => templates.delete(template));
      }
      await ready;
    }
    const ident = pg.escapeIdentifier(database);
    await admin(run.url, async (c) =>
      c.query(`CREATE DATABASE ${ident} TEMPLATE ${pg.escapeIdentifier(template)}${await copyStrategy(c, run.url)}`),
    );
    url = withDatabase(run.url, database);
    drop = () => admin(run.url, (c) => c.query(`DROP DATABASE IF EXISTS ${ident} WITH (FORCE)`)).then(() => {});
  }

  const pool = new pg.Pool({ connectionString: url, max: opts.poolMax ?? 10 });
  pool.on('error', () => {}); // connections killed on purpose by tests must not crash the process
  let closed = false;
  return {
    url,
    database,
    pool,
    server,
    restartServer: async () => {
      if (!server) throw new Error('restartServer needs a server of its own: createTestDatabase({ ownServer: true })');
      await server.restart();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await pool.end().catch(() => {});
      if (drop) await drop();
      if (server) await server.stop();
    },
  };
}

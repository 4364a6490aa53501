/**
 * Gives a test file its own real, migrated PostgreSQL database:
 * - by default an embedded PostgreSQL started for this file (fresh cluster);
 * - with TEST_DATABASE_URL set (for example the machine's PostgreSQL 15),
 *   a fresh database created on that server and dropped afterwards.
 *
 * `migrate` is passed in (pipeline-core's `migrate`) so that this file imports
 * no workspace package and every package's tests can use it.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type EmbeddedServer, startEmbeddedPostgres } from './embedded.js';

export interface TestDatabase {
  /** Connection URL of this test file's own database. */
  url: string;
  database: string;
  /** A small pool on that database, closed by `close()`. */
  pool: pg.Pool;
  /** The embedded server, or null when TEST_DATABASE_URL is used. */
  server: EmbeddedServer | null;
  /** Restart PostgreSQL itself (embedded only). */
  restartServer(): Promise<void>;
  /** Drop the database / stop the server. Safe to call twice. */
  close(): Promise<void>;
}

export interface TestDatabaseOptions {
  migrate?: (url: string) => Promise<unknown>;
  poolMax?: number;
  /** Override TEST_DATABASE_URL (null forces embedded). */
  externalUrl?: string | null;
}

export async function createTestDatabase(opts: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const external = opts.externalUrl === undefined ? process.env.TEST_DATABASE_URL : opts.externalUrl;
  const database = `feedly_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  let server: EmbeddedServer | null = null;
  let url: string;
  let dropOnClose: (() => Promise<void>) | null = null;

  if (external) {
    const admin = new pg.Client({ connectionString: external });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${database}`);
    } finally {
      await admin.end();
    }
    const u = new URL(external);
    u.pathname = `/${database}`;
    url = u.toString();
    dropOnClose = async () => {
      const a = new pg.Client({ connectionString: external });
      await a.connect();
      try {
        await a.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    };
  } else {
    server = await startEmbeddedPostgres();
    await server.createDatabase(database);
    url = server.url(database);
  }

  if (opts.migrate) await opts.migrate(url);
  const pool = new pg.Pool({ connectionString: url, max: opts.poolMax ?? 10 });
  pool.on('error', () => {}); // connections killed on purpose by tests must not crash the process
  let closed = false;
  return {
    url,
    database,
    pool,
    server,
    restartServer: async () => {
      if (!server) throw new Error('restartServer needs the embedded PostgreSQL');
      await server.restart();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await pool.end().catch(() => {});
      if (dropOnClose) await dropOnClose();
      if (server) await server.stop();
    },
  };
}

/** Polls `fn` until it returns a truthy value or the deadline passes (no fixed sleeps). */
export async function waitFor<T>(
  fn: () => Promise<T> | T,
  opts: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const interval = opts.intervalMs ?? 25;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: last error ${last.message}` : '';
      throw new Error(
        `waitFor timed out after ${opts.timeoutMs ?? 10_000} ms${opts.message ? ` (${opts.message})` : ''}${why}`,
      );
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

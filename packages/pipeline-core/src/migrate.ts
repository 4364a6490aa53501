import pg from 'pg';
import { MIGRATIONS, type Migration } from './migrations/index.js';

/** Arbitrary but fixed advisory lock key: serialises concurrent migrators. */
const MIGRATION_LOCK: readonly [number, number] = [0x0feed1a1, 1];

export interface MigrateOptions {
  /** Extra log line sink (a pino logger's `info` works). */
  log?: (msg: string) => void;
  /** For tests: apply only up to this id. */
  upTo?: number;
}

export interface MigrateResult {
  applied: number[];
  current: number;
}

type Target = pg.Pool | pg.ClientBase | string;

/**
 * A pool, told by its shape rather than `instanceof pg.Pool`: the host's pool
 * may come from another copy of `pg` (a peer dependency), and treating it as a
 * client would run each statement on a different connection, losing the
 * transaction and the lock. A pool checks out clients (`connect()`) and counts
 * them; a client has no counts, and a checked-out client has `release()`.
 */
export function isPool(target: unknown): target is pg.Pool {
  if (typeof target !== 'object' || target === null) return false;
  const t = target as Record<string, unknown>;
  return (
    typeof t.connect === 'function' &&
    typeof t.query === 'function' &&
    typeof t.release !== 'function' &&
    typeof t.totalCount === 'number' &&
    typeof t.idleCount === 'number'
  );
}

/**
 * Applies every pending migration in ONE transaction under an advisory
 * transaction lock, so several processes can migrate at once: the second
 * waits for the first, then finds nothing to do. Additive only.
 */
export async function migrate(target: Target, options: MigrateOptions = {}): Promise<MigrateResult> {
  const owned = typeof target === 'string' ? new pg.Client({ connectionString: target }) : null;
  if (owned) await owned.connect();
  let client: pg.ClientBase;
  let release: () => void = () => {};
  if (owned) client = owned;
  else if (isPool(target)) {
    const c = await target.connect();
    client = c;
    release = () => c.release();
  } else client = target as pg.ClientBase;

  try {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [...MIGRATION_LOCK]);
      await client.query(`CREATE TABLE IF NOT EXISTS feedly_migrations (
        id integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ id: number }>('SELECT id FROM feedly_migrations');
      const done = new Set(rows.map((r) => r.id));
      const pending: Migration[] = MIGRATIONS.filter(
        (m) => !done.has(m.id) && (options.upTo === undefined || m.id <= options.upTo),
      );
      for (const m of pending) {
        // Insert our own row first: a concurrent migrator that somehow got past
        // the lock would fail on the primary key instead of applying twice.
        await client.query('INSERT INTO feedly_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
        await client.query(m.sql);
        options.log?.(`applied migration ${String(m.id).padStart(4, '0')}_${m.name}`);
      }
      await client.query('COMMIT');
      const all = [...done, ...pending.map((m) => m.id)];
      return { applied: pending.map((m) => m.id), current: all.length ? Math.max(...all) : 0 };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  } finally {
    release();
    if (owned) await owned.end();
  }
}

/** The highest migration id this package knows. */
export const LATEST_MIGRATION = MIGRATIONS.reduce((max, m) => Math.max(max, m.id), 0);

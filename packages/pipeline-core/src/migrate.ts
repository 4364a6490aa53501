/**
 * The migrator: applies a migration set (docs/migrations.md). A set has a
 * name, its own tracking table, its migrations and its own advisory lock, so
 * the engine's set (this package's) and the stage server's set
 * (apps/stage-api) are applied by the same function, each recorded apart.
 */
import pg from 'pg';
import { MIGRATIONS, type Migration } from './migrations/index.js';

/** A set of migrations with its own ids, tracking table and lock (docs/migrations.md). */
export interface MigrationSet {
  /** Name used in log lines and errors, e.g. `pipeline-core`, `stage-api`. */
  name: string;
  /** The table that records which ids of this set were applied (a plain lower-case identifier). */
  trackingTable: string;
  /** In id order; ids start at 1 and are never renumbered. */
  migrations: readonly Migration[];
  /** pg_advisory_xact_lock key pair: serialises concurrent migrators of this set. */
  lockKey: readonly [number, number];
}

/** The engine's set: the seed tables' state columns, triggers, run log, dispatch requests, instances. */
export const CORE_MIGRATION_SET: MigrationSet = {
  name: 'pipeline-core',
  trackingTable: 'feedly_migrations',
  migrations: MIGRATIONS,
  lockKey: [0x0feed1a1, 1],
};

export interface MigrateOptions {
  /** The set to apply (default: pipeline-core's, CORE_MIGRATION_SET). */
  set?: MigrationSet;
  /** Extra log line sink (a pino logger's `info` works). */
  log?: (msg: string) => void;
  /** For tests: apply only up to this id. */
  upTo?: number;
}

export interface MigrateResult {
  /** The set's name. */
  set: string;
  applied: number[];
  /** The highest id applied, now. */
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

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

function checkSet(set: MigrationSet): void {
  if (!IDENTIFIER.test(set.trackingTable)) {
    throw new TypeError(
      `migration set ${set.name}: tracking table must be a lower-case identifier, got ${JSON.stringify(set.trackingTable)}`,
    );
  }
  let last = 0;
  for (const m of set.migrations) {
    if (!Number.isInteger(m.id) || m.id <= last) {
      throw new TypeError(`migration set ${set.name}: ids must be increasing integers from 1 (${m.id} after ${last})`);
    }
    last = m.id;
  }
}

/**
 * Applies every pending migration of a set (default: pipeline-core's) in ONE
 * transaction under the set's advisory transaction lock, so several processes
 * can migrate at once: the second waits for the first, then finds nothing to
 * do. Additive only. A migration whose SQL is empty (an id that moved to
 * another set, docs/migrations.md) is only recorded.
 */
export async function migrate(target: Target, options: MigrateOptions = {}): Promise<MigrateResult> {
  const set = options.set ?? CORE_MIGRATION_SET;
  checkSet(set);
  const table = set.trackingTable;
  // A connection that dies between two statements (the server restarting) emits 'error' on the
  // client; without a listener that would end the process. The statement in flight, or the next
  // one, rejects anyway, which is what migrate() reports (as withTransaction does).
  const onError = () => {};
  const owned = typeof target === 'string' ? new pg.Client({ connectionString: target }) : null;
  owned?.on('error', onError);
  if (owned) await owned.connect();
  let client: pg.ClientBase;
  let release: () => void = () => {};
  if (owned) client = owned;
  else if (isPool(target)) {
    const c = await target.connect();
    c.on('error', onError);
    client = c;
    release = () => {
      c.off('error', onError);
      c.release();
    };
  } else client = target as pg.ClientBase;

  try {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [...set.lockKey]);
      // The table name is checked above (a plain identifier from code, never from input).
      await client.query(`CREATE TABLE IF NOT EXISTS ${table} (
        id integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ id: number }>(`SELECT id FROM ${table}`);
      const done = new Set(rows.map((r) => r.id));
      const pending: Migration[] = set.migrations.filter(
        (m) => !done.has(m.id) && (options.upTo === undefined || m.id <= options.upTo),
      );
      for (const m of pending) {
        // Insert our own row first: a concurrent migrator that somehow got past
        // the lock would fail on the primary key instead of applying twice.
        await client.query(`INSERT INTO ${table} (id, name) VALUES ($1, $2)`, [m.id, m.name]);
        if (m.sql.trim() !== '') await client.query(m.sql);
        options.log?.(`applied ${set.name} migration ${String(m.id).padStart(4, '0')}_${m.name}`);
      }
      await client.query('COMMIT');
      const all = [...done, ...pending.map((m) => m.id)];
      return { set: set.name, applied: pending.map((m) => m.id), current: all.length ? Math.max(...all) : 0 };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  } finally {
    release();
    if (owned) await owned.end();
  }
}

/** The highest id of a set. */
export function latestMigration(set: MigrationSet): number {
  return set.migrations.reduce((max, m) => Math.max(max, m.id), 0);
}

/** The highest migration id of pipeline-core's set. */
export const LATEST_MIGRATION = latestMigration(CORE_MIGRATION_SET);

/**
 * The highest id of a set applied to a database: null when the set's
 * tracking table does not exist (never migrated), 0 when it is empty.
 */
export async function appliedMigration(
  db: Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>,
  set: MigrationSet = CORE_MIGRATION_SET,
): Promise<number | null> {
  checkSet(set);
  const t = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [set.trackingTable]);
  if (!t.rows[0]?.present) return null;
  const r = await db.query<{ id: number | null }>(`SELECT max(id) AS id FROM ${set.trackingTable}`);
  return r.rows[0]?.id ?? 0;
}

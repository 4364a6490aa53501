/**
 * Where the time goes in a chain run, seen from PostgreSQL: statements (round
 * trips) and commits per step, from pg_stat_statements and pg_stat_database.
 */
import type pg from 'pg';

type Db = Pick<pg.Pool, 'query'>;

export interface DbProfile {
  statements: number;
  commits: number;
  rollbacks: number;
  /** The most frequent statements: calls and total execution time. */
  top: { calls: number; totalMs: number; query: string }[];
}

export async function enableStatements(db: Db): Promise<boolean> {
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    return true;
  } catch {
    return false;
  }
}

export async function resetProfile(db: Db): Promise<{ commits: number; rollbacks: number }> {
  await db.query('SELECT pg_stat_statements_reset()').catch(() => {});
  await db.query('SELECT pg_stat_clear_snapshot()');
  const r = await db.query<{ c: string; r: string }>(
    'SELECT xact_commit AS c, xact_rollback AS r FROM pg_stat_database WHERE datname = current_database()',
  );
  return { commits: Number(r.rows[0]?.c ?? 0), rollbacks: Number(r.rows[0]?.r ?? 0) };
}

export async function readProfile(db: Db, base: { commits: number; rollbacks: number }): Promise<DbProfile> {
  // Statistics are flushed by each backend at most once a second (and at exit).
  await db.query('SELECT pg_stat_force_next_flush()').catch(() => {});
  await db.query('SELECT pg_stat_clear_snapshot()');
  const r = await db.query<{ c: string; r: string }>(
    'SELECT xact_commit AS c, xact_rollback AS r FROM pg_stat_database WHERE datname = current_database()',
  );
  let statements = 0;
  let top: DbProfile['top'] = [];
  try {
    const s = await db.query<{ calls: string; total: number; query: string }>(
      `SELECT calls, total_exec_time AS total, query FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND query NOT LIKE '%bench_probe%' AND query NOT LIKE '%pg_stat%'
        ORDER BY calls DESC`,
    );
    statements = s.rows.reduce((n, row) => n + Number(row.calls), 0);
    top = s.rows.slice(0, 8).map((row) => ({
      calls: Number(row.calls),
      totalMs: Math.round(row.total),
      query: row.query.replace(/\s+/g, ' ').slice(0, 160),
    }));
  } catch {
    // pg_stat_statements not available
  }
  return {
    statements,
    commits: Number(r.rows[0]?.c ?? 0) - base.commits,
    rollbacks: Number(r.rows[0]?.r ?? 0) - base.rollbacks,
    top,
  };
}

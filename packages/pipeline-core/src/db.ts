import type pg from 'pg';

export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>;

/**
 * The database URL from the environment: `DATABASE_URL`, else a URL built
 * from `DB_HOST` `DB_PORT` `DB_NAME` `DB_USER` `DB_PASSWORD`. Undefined when
 * none is set (the local commands then start an embedded PostgreSQL).
 */
export function databaseUrlFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.DATABASE_URL && env.DATABASE_URL.trim() !== '') return env.DATABASE_URL.trim();
  const keys = ['DB_HOST', 'DB_PORT', 'DB_NAME', 'DB_USER', 'DB_PASSWORD'] as const;
  if (!keys.some((k) => env[k] && env[k]?.trim() !== '')) return undefined;
  const url = new URL('postgres://localhost');
  url.hostname = env.DB_HOST || 'localhost';
  url.port = env.DB_PORT || '5432';
  url.pathname = `/${encodeURIComponent(env.DB_NAME || 'feedlyai')}`;
  url.username = encodeURIComponent(env.DB_USER || 'feedlyai');
  if (env.DB_PASSWORD) url.password = encodeURIComponent(env.DB_PASSWORD);
  return url.toString();
}

/** Runs `fn` in a transaction on one pooled connection; rolls back on error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A connection that dies while checked out emits 'error' on the client; without a listener
  // that event would end the process. The failed query rejects anyway, which is what we act on.
  const onError = () => {};
  client.on('error', onError);
  let out: T;
  try {
    await client.query('BEGIN');
    out = await fn(client);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    client.off('error', onError);
    client.release(err instanceof Error ? isBroken(err) : false);
    throw err;
  }
  client.off('error', onError);
  client.release();
  return out;
}

/** A connection that failed this way cannot be reused. */
function isBroken(err: Error): boolean {
  const code = (err as { code?: string }).code ?? '';
  return /^08|^57P0/.test(code) || /Connection terminated|connection.*(ended|closed)/i.test(err.message);
}

/** A URL safe to log: the password replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

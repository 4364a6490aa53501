/**
 * The benchmarks and the chaos suite run PostgreSQL at its default durability
 * (`startEmbeddedPostgres({ durable: true })`); unit tests keep the fast
 * default (fsync off). Checked on the running servers.
 */
import { startEmbeddedPostgres } from '@feedlyai/test-helpers';
import pg from 'pg';
import t from 'tap';
import { startBenchServer } from '../src/db.js';

async function settings(url: string): Promise<Record<string, string>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')`,
    );
    return Object.fromEntries(r.rows.map((x) => [x.name, x.setting]));
  } finally {
    await c.end();
  }
}

t.test('durable: true runs at PostgreSQL defaults; the default is the fast test cluster', async (t) => {
  const durable = await startEmbeddedPostgres({ durable: true });
  t.teardown(() => durable.stop());
  t.equal(durable.durable, true);
  t.same(await settings(durable.url()), { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on' });

  const fast = await startEmbeddedPostgres();
  t.teardown(() => fast.stop());
  t.equal(fast.durable, false);
  t.same(await settings(fast.url()), { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' });
});

t.test('the benchmark server is durable', async (t) => {
  const bench = await startBenchServer();
  t.teardown(() => bench.stop());
  t.equal(bench.server.durable, true);
  t.match(await settings(bench.server.url()), { fsync: 'on', synchronous_commit: 'on' });
});

// When the LISTEN connection is lost, the plugin's own pool drops its idle connections
// (dropIdleConnections). That happens when the server goes away, so a connection it holds may
// receive the server's termination while held: that must not end the process (seen once in the
// chaos suite's faults scenario, a PostgreSQL restart: "terminating connection due to
// administrator command", an unhandled 'error' on a checked-out client).
import pg from 'pg';
import t from 'tap';
import { dropIdleConnections } from '../src/plugin.js';
import { testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

t.test('a connection terminated by the server while it is being dropped does not end the process', async (t) => {
  const pool = new pg.Pool({ connectionString: db.url, max: 3 });
  pool.on('error', () => {}); // the idle ones' errors are the pool's (as in the plugin)
  t.teardown(() => pool.end());
  // Three idle connections.
  const held = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
  for (const c of held) c.release();
  t.equal(pool.idleCount, 3);

  // Each connection handed out is terminated by the server while dropIdleConnections holds it:
  // the next checkout waits until the client has seen the termination ('end' follows its 'error').
  let terminated = 0;
  let previous: Promise<unknown> = Promise.resolve();
  const terminating = {
    get idleCount() {
      return pool.idleCount;
    },
    connect: async () => {
      await previous;
      const client = await pool.connect();
      const ended = new Promise((resolve) => client.once('end', resolve));
      previous = db.pool
        .query('SELECT pg_terminate_backend($1)', [(client as unknown as { processID: number }).processID])
        .then(() => ended)
        .then(() => terminated++);
      return client;
    },
  } as unknown as pg.Pool;
  await dropIdleConnections(terminating);
  await previous;
  t.ok(terminated >= 2, `connections were terminated while held (${terminated})`);
  await waitFor(() => pool.totalCount === 0, { timeoutMs: 10_000, message: 'the dropped clients left the pool' });
  const r = await pool.query<{ one: number }>('SELECT 1 AS one');
  t.equal(r.rows[0]?.one, 1, 'the pool connects afresh');
});

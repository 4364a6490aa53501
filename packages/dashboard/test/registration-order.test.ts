// The dashboard in a host that also registers @fastify/postgres and a plugin of its own
// (fastify-plugin wrapped: @fastify/cookie, an `authenticate` decorator used as the dashboard's
// onRequest, a route), in each of the six orders, each host in its own process
// (test/fixtures/host-order.mjs, the built plugin): the host boots on its own pool, the host's
// hook guards the dashboard, its own cookie route works, a browser's event stream gets a change,
// and the host closes and exits with nothing of the dashboard left open.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { seedJob, testDb, waitFor } from './helpers.js';
import { openSse } from './sse-client.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/host-order.mjs', import.meta.url));
const PLUGINS = ['dashboard', 'postgres', 'host'] as const;

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

interface Message {
  type: string;
  message?: string;
  port?: number;
  page?: number;
  csrfCookie?: boolean;
  anonymous?: number;
  me?: unknown;
}

/** The child's IPC messages, its stderr and its exit. */
function watch(child: ChildProcess) {
  const messages: Message[] = [];
  let stderr = '';
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  child.on('message', (m) => messages.push(m as Message));
  child.on('exit', (code, signal) => {
    exit = { code, signal };
  });
  return {
    stderr: () => stderr,
    exit: () => exit,
    message: async (type: string, timeoutMs: number): Promise<Message> => {
      await waitFor(() => messages.some((m) => m.type === type || m.type === 'error') || exit, {
        timeoutMs,
        message: `'${type}' from the host`,
      });
      const failed = messages.find((m) => m.type === 'error');
      if (failed) throw new Error(`the host failed: ${failed.message}\n${stderr}`);
      const found = messages.find((m) => m.type === type);
      if (!found) throw new Error(`the host exited ${JSON.stringify(exit)} before '${type}'\n${stderr}`);
      return found;
    },
  };
}

const db = await testDb();
t.teardown(() => db.close());

async function dashboardConnections(): Promise<number> {
  const r = await db.pool.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name LIKE 'pipeline_dashboard%'`,
  );
  return r.rows[0].n;
}

for (const order of permutations(PLUGINS)) {
  t.test(`registered in the order ${order.join(', ')}: boots, guards, streams, closes`, async (t) => {
    const child = fork(FIXTURE, [order.join(','), db.url], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const host = watch(child);
    const ready = await host.message('ready', 60_000);
    t.match(
      ready,
      { page: 200, csrfCookie: true, anonymous: 401, me: { user: 'kim' } },
      "booted: the page for the host's user, 401 for anyone else, the host's cookie route",
    );
    t.equal(await dashboardConnections(), 1, "one LISTEN connection, from the host's pool");

    const s = await seedJob(db.pool, { variants: 1 });
    const stream = await openSse(`http://127.0.0.1:${ready.port}/pipeline/events?job=${s.jobId}`, {
      authorization: 'Bearer host-user',
    });
    t.teardown(() => stream.close());
    await db.pool.query(`UPDATE jobs_variants SET current_step = 'planner', status = 'running' WHERE job_id = $1`, [
      s.jobId,
    ]);
    await waitFor(() => stream.events.some((e) => e.event === 'variant'), {
      timeoutMs: 15_000,
      message: 'the change on the stream',
    });

    child.send({ type: 'close' });
    await host.message('closed', 30_000);
    await waitFor(() => host.exit(), { timeoutMs: 15_000, message: 'the host process exits on its own after close()' });
    t.same(host.exit(), { code: 0, signal: null }, 'exit code 0: nothing left open kept it alive');
    await waitFor(() => stream.ended, { timeoutMs: 5_000, message: 'the stream ended with the host' });
    await waitFor(async () => (await dashboardConnections()) === 0, {
      timeoutMs: 10_000,
      message: 'no dashboard connection left',
    });
    t.notMatch(host.stderr(), /FST_ERR|Error/, 'nothing on stderr');
  });
}

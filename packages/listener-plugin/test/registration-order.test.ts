// The plugin in a host that also registers @fastify/schedule and
// @fastify/postgres, in each of the six orders, each host in its own process
// (test/fixtures/host-order.mjs, the built plugin): the host boots, the
// listener connects on the host's pool and dispatches a job, and the host
// closes and exits (nothing left open). Registering @fastify/schedule after
// the plugin used to crash the host at boot (FST_ERR_DEC_ALREADY_PRESENT).
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { startFakeStage } from './fake-stage.js';
import { markImgGenDone, seedJob, testDb, waitFor } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/host-order.mjs', import.meta.url));
const PLUGINS = ['listener', 'schedule', 'postgres'] as const;

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

interface Message {
  type: string;
  message?: string;
  connected?: boolean;
  enabled?: boolean;
  scheduler?: boolean;
  pg?: boolean;
}

/** The child's IPC messages, its stderr, and its exit. */
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
    /** The first message of this type; rejects at once when the host reports an error or exits first. */
    message: (type: string, timeoutMs: number): Promise<Message> =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find((m) => m.type === type);
          const failed = messages.find((m) => m.type === 'error');
          if (found) done(() => resolve(found));
          else if (failed) done(() => reject(new Error(`the host failed: ${failed.message}\n${stderr}`)));
          else if (exit)
            done(() => reject(new Error(`the host exited ${JSON.stringify(exit)} before '${type}'\n${stderr}`)));
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`no '${type}' from the host within ${timeoutMs} ms\n${stderr}`))),
          timeoutMs,
        );
        const done = (settle: () => void) => {
          clearTimeout(timer);
          child.off('message', check);
          child.off('exit', check);
          settle();
        };
        child.on('message', check);
        child.on('exit', check);
        check();
      }),
  };
}

const db = await testDb();
t.teardown(() => db.close());
const stage = await startFakeStage(db.pool);
t.teardown(() => stage.close());

/** Connections named job_state_listener (the LISTEN connection), or with `all` also the plugin's own pool's. */
async function listenerConnections(all = false): Promise<number> {
  const r = await db.pool.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name ${all ? "LIKE 'job_state_listener%'" : "= 'job_state_listener'"}`,
  );
  return r.rows[0].n;
}

/**
 * Forks the host with these arguments, waits until it is ready (its `ready` message is checked
 * against `expected`), has it dispatch a job, closes it and checks that it exits on its own.
 */
async function bootDispatchClose(
  t: Test,
  args: string[],
  expected: Partial<Message>,
  env?: NodeJS.ProcessEnv,
): Promise<void> {
  const child = fork(FIXTURE, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], ...(env ? { env } : {}) });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const host = watch(child);
  const ready = await host.message('ready', 60_000);
  t.match(ready, { connected: true, ...expected }, 'booted, LISTEN connected');
  await waitFor(async () => (await listenerConnections()) === 1, {
    timeoutMs: 10_000,
    message: 'one job_state_listener connection',
  });

  const s = await seedJob(db.pool, { variants: 1 });
  const variant = s.variantIds[0] as string;
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => stage.calls('vlm_analyze', variant).length >= 1, {
    timeoutMs: 30_000,
    message: 'the job dispatched to its first stage',
  });
  t.equal(stage.calls('vlm_analyze', variant).length, 1, 'dispatched once');

  child.send({ type: 'close' });
  await host.message('closed', 30_000);
  await waitFor(() => host.exit(), { timeoutMs: 15_000, message: 'the host process exits on its own after close()' });
  t.same(host.exit(), { code: 0, signal: null }, 'exit code 0: nothing left open kept it alive');
  await waitFor(async () => (await listenerConnections(true)) === 0, {
    timeoutMs: 10_000,
    message: 'no listener connection left',
  });
  t.notMatch(host.stderr(), /FST_ERR|Error/, 'nothing on stderr');
}

for (const order of permutations(PLUGINS)) {
  t.test(`registered in the order ${order.join(', ')}: boots, dispatches, closes`, (t) =>
    bootDispatchClose(t, [order.join(','), db.url, stage.url], { scheduler: true, pg: true }),
  );
}

t.test('registered with no options at all: the database and the stage come from the environment', (t) =>
  // Only what optionsFromEnv reads: DATABASE_URL and STAGE_API_URL, every other setting at its default.
  bootDispatchClose(
    t,
    ['bare'],
    { enabled: true, scheduler: false, pg: false },
    {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: db.url,
      STAGE_API_URL: stage.url,
    },
  ),
);

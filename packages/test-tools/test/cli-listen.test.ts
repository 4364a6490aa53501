/**
 * `feedly-pipeline listen`: the listener on its own (no stage server hosting
 * it), started as a child process against this file's database and a stage
 * double. It dispatches a seeded job to the end, answers /healthz, is what
 * `status` finds in the database, and stops cleanly on SIGTERM and SIGINT: exit 0 and
 * no `job_state_listener` connection or registration left.
 */
import { freePort } from '@feedlyai/test-helpers';
import t, { type Test } from 'tap';
import { cleanEnv, markImgGenDone, runCliInProcess, seedJob, startCli, testDb, waitFor } from './helpers.js';
import { startStageDouble } from './stage-double.js';

const db = await testDb();
t.teardown(() => db.close());
const stage = await startStageDouble(db.pool);
t.teardown(() => stage.close());

async function listenerConnections(): Promise<number> {
  const r = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE application_name = 'job_state_listener' AND datname = current_database()`,
  );
  return r.rows[0]?.n ?? 0;
}

/** Sends `signal` to a running `listen` and checks the clean stop: exit 0, its connection and registration gone. */
async function stopsCleanly(
  t: Test,
  listen: ReturnType<typeof startCli>,
  signal: NodeJS.Signals,
  instanceId: string,
): Promise<void> {
  listen.child.kill(signal);
  const end = await listen.done;
  t.equal(end.code, 0, `exit 0 after ${signal}`);
  t.match(end.stdout, /job state listener stopped/);
  t.notMatch(end.stderr, /\n\s+at /, 'no stack trace');
  await waitFor(async () => (await listenerConnections()) === 0, {
    timeoutMs: 10_000,
    message: 'no job_state_listener connection left',
  });
  const reg = await db.pool.query('SELECT 1 FROM pipeline_instances WHERE instance_id = $1', [instanceId]);
  t.equal(reg.rowCount, 0, 'its registration removed (a clean stop)');
}

t.test('listen dispatches, answers /healthz, shows in status, and stops cleanly on SIGTERM', async (t) => {
  const port = await freePort();
  // The database and the stage URL come from the options; the rest from the environment (none set here).
  const listen = startCli(['listen', '--database-url', db.url, '--stage-api-url', stage.url, '--port', String(port)], {
    env: cleanEnv({ PIPELINE_INSTANCE_ID: 'cli-listen-test' }),
  });
  t.teardown(() => {
    if (listen.child.exitCode === null) listen.child.kill('SIGKILL');
  });
  const health = `http://127.0.0.1:${port}/healthz`;
  const first = await waitFor(
    async () => {
      if (listen.child.exitCode !== null) throw new Error(`listen exited: ${listen.stderr()}${listen.stdout()}`);
      const r = await fetch(health).catch(() => null);
      return r?.status === 200 ? { status: r.status, body: (await r.json()) as Record<string, unknown> } : null;
    },
    { timeoutMs: 60_000, intervalMs: 100, message: '/healthz answers 200' },
  );
  t.equal(first.status, 200, '/healthz: 200 once the LISTEN connection is up');
  t.match(first.body, { enabled: true, connected: true, instanceId: 'cli-listen-test' }, "the listener's status()");
  t.equal(await listenerConnections(), 1, 'one job_state_listener connection');

  const job = await seedJob(db.pool, { variants: 2 });
  await markImgGenDone(db.pool, job.variantIds);
  await waitFor(
    async () => {
      const r = await db.pool.query('SELECT current_step, status FROM jobs WHERE job_id = $1', [job.jobId]);
      return r.rows[0]?.current_step === 'instagram_feed_gen' && r.rows[0]?.status === 'done';
    },
    { timeoutMs: 120_000, intervalMs: 100, message: 'the job went through every step' },
  );
  const first2 = stage.requests.filter((r) => r.step === 'vlm_analyze' && r.jobId === job.jobId);
  t.same(
    first2.map((r) => r.jobVariantsId).sort(),
    [...job.variantIds].sort(),
    'vlm_analyze dispatched once per variant after img_gen/done',
  );
  t.ok(
    first2.every((r) => r.attempt === 1 && r.status === 200),
    'with attempt 1, answered 200',
  );
  t.equal(
    stage.requests.filter((r) => r.step === 'instagram_feed_gen' && r.jobId === job.jobId).length,
    1,
    'the last step dispatched once',
  );
  t.match(listen.stdout(), /\[TRIGGER\] pipeline step triggered/, 'its log is on stdout');

  // The stage double has no /healthz: status finds the listener through the database.
  const status = await runCliInProcess(['status', '--json', '--stage-api-url', stage.url], {
    env: cleanEnv({ DATABASE_URL: db.url }),
  });
  const listenerCheck = JSON.parse(status.stdout).checks.find((c: { name: string }) => c.name === 'listener enabled');
  t.match(
    listenerCheck,
    { ok: true, source: /^database/, detail: /1 instance\(s\) registered with a live connection: cli-listen-test/ },
    'status: the listener found in the database, and says so',
  );

  await stopsCleanly(t, listen, 'SIGTERM', 'cli-listen-test');
});

t.test('listen stops cleanly on SIGINT (Ctrl-C in a terminal) too, without a health port', async (t) => {
  const listen = startCli(['listen', '--database-url', db.url, '--stage-api-url', stage.url], {
    env: cleanEnv({ PIPELINE_INSTANCE_ID: 'cli-listen-sigint' }),
  });
  t.teardown(() => {
    if (listen.child.exitCode === null) listen.child.kill('SIGKILL');
  });
  await waitFor(
    async () => {
      if (listen.child.exitCode !== null) throw new Error(`listen exited: ${listen.stderr()}${listen.stdout()}`);
      return (await listenerConnections()) === 1;
    },
    { timeoutMs: 60_000, message: 'the LISTEN connection is up' },
  );
  await stopsCleanly(t, listen, 'SIGINT', 'cli-listen-sigint');
});

t.test('listen: bad arguments and variables exit 2 with the reason', async (t) => {
  const env = cleanEnv({ DATABASE_URL: db.url });
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['listen', '--port', 'http'], env, /expected a port from 0 to 65535, got 'http'/],
    [['listen', '--port', '70000'], env, /expected a port from 0 to 65535/],
    [['listen', '--stage-api-url', 'ftp://x'], env, /expected an http\(s\) URL, got 'ftp:\/\/x'/],
    [['listen', 'extra'], env, /too many arguments/],
    [['listen'], { ...env, PIPELINE_FANIN_POLICY: 'most' }, /PIPELINE_FANIN_POLICY must be 'all' or 'any', got "most"/],
    [['listen'], { ...env, JOB_STATE_LISTENER_RECONNECT_DELAY: '-1' }, /JOB_STATE_LISTENER_RECONNECT_DELAY must be/],
    [
      ['listen'],
      { ...env, ENABLE_JOB_STATE_LISTENER: 'false' },
      /the listener is disabled, so listen has nothing to run/,
    ],
  ];
  for (const [args, e, why] of cases) {
    const r = await runCliInProcess(args, { env: e });
    t.equal(r.code, 2, `${args.join(' ')} exits 2`);
    t.match(r.stderr, why);
    t.match(r.stderr, /Usage: feedly-pipeline listen/);
  }
  t.equal(await listenerConnections(), 0, 'none of them connected');
});

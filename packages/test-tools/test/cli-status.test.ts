/**
 * `status` asks the running processes whether a listener runs, never its own
 * environment: the stage server's /healthz (the listener it hosts, with that
 * server's ENABLE_JOB_STATE_LISTENER), else the database's instance registry;
 * and it says which source answered.
 */
import { freePort } from '@feedlyai/test-helpers';
import t from 'tap';
import { cleanEnv, runCliInProcess, startCli, startStageServer, tempDir, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const storage = await tempDir();
t.teardown(() => storage.remove());

interface StatusCheck {
  name: string;
  ok: boolean;
  detail: string;
  source?: string;
}

async function listenerCheck(stageUrl: string, cliEnv: Record<string, string> = {}) {
  const r = await runCliInProcess(['status', '--json'], {
    env: cleanEnv({ DATABASE_URL: db.url, STAGE_API_URL: stageUrl, ...cliEnv }),
  });
  const parsed = JSON.parse(r.stdout) as { checks: StatusCheck[] };
  return { code: r.code, check: parsed.checks.find((c) => c.name === 'listener enabled') as StatusCheck };
}

t.test(
  "the stage server runs with its listener disabled: FAIL, whatever this command's environment says",
  async (t) => {
    const stage = await startStageServer(db.url, storage.path, { listener: { enabled: false } });
    t.teardown(() => stage.close());
    // ENABLE_JOB_STATE_LISTENER=true here, as the old check read it: it must not matter.
    const r = await listenerCheck(stage.baseUrl, { ENABLE_JOB_STATE_LISTENER: 'true' });
    t.equal(r.code, 1, 'exit 1');
    t.match(r.check, {
      ok: false,
      detail: new RegExp(
        `the stage server at ${stage.baseUrl} runs with ENABLE_JOB_STATE_LISTENER=false, and no listener instance is registered with a live job_state_listener connection`,
      ),
      source: /^stage server \/healthz and database/,
    });
    const text = await runCliInProcess(['status'], {
      env: cleanEnv({ DATABASE_URL: db.url, STAGE_API_URL: stage.baseUrl }),
    });
    t.match(
      text.stdout,
      /FAIL listener enabled: .* -> set ENABLE_JOB_STATE_LISTENER=true for the stage server and restart it, or run feedly-pipeline listen/,
    );

    // A listener elsewhere (here `feedly-pipeline listen`): found in the database, and said so.
    const port = await freePort();
    const listen = startCli(['listen', '--port', String(port), '--stage-api-url', stage.baseUrl], {
      env: cleanEnv({ DATABASE_URL: db.url, PIPELINE_INSTANCE_ID: 'status-test-listen' }),
    });
    t.teardown(() => {
      if (listen.child.exitCode === null) listen.child.kill('SIGKILL');
    });
    await waitFor(
      async () => {
        if (listen.child.exitCode !== null) throw new Error(`listen exited: ${listen.stderr()}`);
        return (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null))?.status === 200;
      },
      { timeoutMs: 60_000, intervalMs: 100, message: 'listen up' },
    );
    const found = await listenerCheck(stage.baseUrl, { ENABLE_JOB_STATE_LISTENER: 'false' });
    t.match(found.check, {
      ok: true,
      detail:
        /1 instance\(s\) registered with a live connection: status-test-listen .*runs with ENABLE_JOB_STATE_LISTENER=false/,
      source: /^database/,
    });
    listen.child.kill('SIGTERM');
    t.equal((await listen.done).code, 0);
  },
);

t.test('the stage server hosts a connected listener: OK, from its /healthz', async (t) => {
  const stage = await startStageServer(db.url, storage.path);
  t.teardown(() => stage.close());
  // ENABLE_JOB_STATE_LISTENER=false here: it must not matter either.
  const r = await listenerCheck(stage.baseUrl, { ENABLE_JOB_STATE_LISTENER: 'false' });
  t.match(r.check, {
    ok: true,
    detail: new RegExp(`hosted by the stage server at ${stage.baseUrl}, LISTEN connection up`),
    source: 'stage server /healthz',
  });
  t.equal(r.code, 0, 'every check passes');
});

/**
 * The stage server without the listener: nothing is triggered, so
 * verify-trigger must fail and status must say which check is wrong.
 */
import t from 'tap';
import { cleanEnv, runCliInProcess, startStageServer, tempDir, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const storage = await tempDir();
t.teardown(() => storage.remove());
const stage = await startStageServer(db.url, storage.path, { listener: false });
t.teardown(() => stage.close());
const env = cleanEnv({ DATABASE_URL: db.url, STORAGE_DIR: storage.path, STAGE_API_URL: stage.baseUrl });

t.test('verify-trigger exits 1 when the listener is off', async (t) => {
  const seeded = await runCliInProcess(['seed', '--once', '--no-img-gen', '--variants-count', '1', '--json'], { env });
  t.equal(seeded.code, 0, 'exit code 0', { stdout: seeded.stdout, stderr: seeded.stderr });
  const variantId = JSON.parse(seeded.stdout).created[0].variantIds[0];
  const r = await runCliInProcess(['verify-trigger', variantId, '--timeout', '1.5'], { env });
  t.equal(r.code, 1, 'exit code 1', { stdout: r.stdout, stderr: r.stderr });
  t.match(r.stdout, /before: img_gen\/queued/);
  t.match(r.stdout, /after: {2}img_gen\/done/);
  t.match(r.stdout, /FAIL: the variant did not move to vlm_analyze within 1\.5 s/);
  const json = await runCliInProcess(['verify-trigger', variantId, '--timeout', '0.5', '--json'], { env });
  t.equal(json.code, 1);
  const parsed = JSON.parse(json.stdout);
  t.equal(parsed.moved, false);
  t.match(parsed.after, { current_step: 'img_gen', status: 'done' });
});

t.test('status: server up, but no listener anywhere (exit 1), with the fix', async (t) => {
  const r = await runCliInProcess(['status'], { env });
  t.equal(r.code, 1);
  t.match(r.stdout, /OK {3}stage server/);
  t.match(
    r.stdout,
    /FAIL listener enabled: the stage server at http:\S+ hosts no listener, and no listener instance is registered with a live job_state_listener connection: nothing is triggered automatically; source: database .* -> start the stage server with the listener \(pnpm dev\), run feedly-pipeline listen/,
  );
  t.match(
    r.stdout,
    /FAIL listener connection \(application_name 'job_state_listener' in pg_stat_activity\): no listener is connected to this database -> start the stage server with the listener/,
  );
  // This command's own ENABLE_JOB_STATE_LISTENER says nothing about the running processes.
  const on = await runCliInProcess(['status'], { env: { ...env, ENABLE_JOB_STATE_LISTENER: 'true' } });
  t.equal(on.code, 1);
  t.match(on.stdout, /FAIL listener enabled: the stage server at \S+ hosts no listener/);
});

t.test('monitor hints when nothing moves: no listener connection', async (t) => {
  const seeded = await runCliInProcess(['seed', '--once', '--variants-count', '1', '--json'], { env });
  const jobId = JSON.parse(seeded.stdout).created[0].jobId;
  const r = await runCliInProcess(['monitor', jobId, '4', '0.2', '--json'], { env });
  t.equal(r.code, 1);
  const last = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
  t.equal(last.outcome, null);
  t.match(last.hints.join('\n'), /no 'job_state_listener' connection in pg_stat_activity/);
});

t.test('monitor and analyze on a job that does not exist: one line, exit 1', async (t) => {
  const id = '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a';
  const m = await runCliInProcess(['monitor', id, '2', '0.2'], { env });
  t.equal(m.code, 1);
  t.equal(m.stderr.trim(), `job ${id} not found`);
  const a = await runCliInProcess(['analyze', '--job-id', id], { env });
  t.equal(a.code, 1);
  t.match(a.stdout, `no jobs found for job ${id}`);
});

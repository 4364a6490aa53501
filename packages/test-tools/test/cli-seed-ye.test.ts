/**
 * seed-ye takes the seeds' options --once and --wait-for-completion with
 * seed's meaning: one job; wait for each job to be done or failed before the
 * next one (exit 1 when one failed or timed out).
 */
import t from 'tap';
import { cleanEnv, runCliInProcess, startCli, tempDir, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const storage = await tempDir();
t.teardown(() => storage.remove());
const env = cleanEnv({ DATABASE_URL: db.url, STORAGE_DIR: storage.path });

async function jobsOf(tenant: string): Promise<string[]> {
  const r = await db.pool.query<{ job_id: string }>('SELECT job_id FROM jobs WHERE tenant_id = $1', [tenant]);
  return r.rows.map((x) => x.job_id);
}

t.test('--once: one job at user_img_input/done', async (t) => {
  const r = await runCliInProcess(['seed-ye', '--once', '--tenant-id', 'ye_once', '--json'], { env });
  t.equal(r.code, 0, 'exit 0');
  const out = JSON.parse(r.stdout);
  t.equal(out.created.length, 1);
  t.same(await jobsOf('ye_once'), [out.created[0].jobId]);
  const contradiction = await runCliInProcess(['seed-ye', '--once', '--count', '2'], { env });
  t.equal(contradiction.code, 2);
  t.match(contradiction.stderr, /--once and --count contradict each other/);
});

t.test('--wait-for-completion waits until the job is done, then exits 0', async (t) => {
  const c = startCli(['seed-ye', '--once', '--wait-for-completion', '--tenant-id', 'ye_wait', '--json'], { env });
  t.teardown(() => {
    if (c.child.exitCode === null) c.child.kill('SIGKILL');
  });
  const [jobId] = await waitFor(async () => {
    const ids = await jobsOf('ye_wait');
    return ids.length === 1 ? ids : null;
  });
  // The YE part and the pipeline run meanwhile; here an operator marks the job finished.
  await waitFor(() => /user_img_input\/done/.test(c.stderr()), { message: 'waiting, with its progress line' });
  t.equal(c.child.exitCode, null, 'still waiting while the job is not finished');
  await db.pool.query(`UPDATE jobs SET current_step = 'instagram_feed_gen', status = 'done' WHERE job_id = $1`, [
    jobId,
  ]);
  const r = await c.done;
  t.equal(r.code, 0, 'exit 0');
  t.match(JSON.parse(r.stdout), { created: [{ jobId }], completed: 1, failed: 0, timedOut: 0 });
  t.match(r.stderr, new RegExp(`job ${jobId} completed in`));
});

t.test('--wait-for-completion: a job that fails makes the exit code 1', async (t) => {
  const c = startCli(['seed-ye', '--wait-for-completion', '--tenant-id', 'ye_fail'], { env });
  t.teardown(() => {
    if (c.child.exitCode === null) c.child.kill('SIGKILL');
  });
  const [jobId] = await waitFor(async () => {
    const ids = await jobsOf('ye_fail');
    return ids.length === 1 ? ids : null;
  });
  await runCliInProcess(['cancel', jobId as string], { env });
  const r = await c.done;
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stdout, new RegExp(`job ${jobId} failed: cancelled`));
  t.match(r.stdout, /summary: 1 job\(s\) created, 0 completed, 1 failed, 0 timed out/);
});

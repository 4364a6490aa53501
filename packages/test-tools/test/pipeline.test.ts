/**
 * The commands against a real pipeline: real PostgreSQL, the real stage
 * server hosting the real listener plugin. One server for the file; the
 * subtests run in order.
 */
import { readFileSync } from 'node:fs';
import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { samplePhotoPath } from '../src/assets.js';
import {
  cleanEnv,
  jobState,
  markImgGenDone,
  runCliInProcess,
  startStageServer,
  tempDir,
  testDb,
  variantState,
  waitFor,
} from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const storage = await tempDir();
t.teardown(() => storage.remove());
const stage = await startStageServer(db.url, storage.path, {
  listener: {
    // A fast give-up for the retry test: two attempts, short backoff.
    stepOverrides: { vlm_analyze: { retry: { maxAttempts: 2, backoffBaseMs: 100, backoffMaxMs: 200 } } },
  },
});
t.teardown(() => stage.close());
const env = cleanEnv({ DATABASE_URL: db.url, STORAGE_DIR: storage.path, STAGE_API_URL: stage.baseUrl });
const cli = (args: string[]) => runCliInProcess(args, { env });

let doneJobId = '';

t.test('status passes on a healthy setup, with the fire test', async (t) => {
  const r = await cli(['status', '--fire-test']);
  t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
  for (const name of [
    /OK {3}stage server http:\/\/127\.0\.0\.1:\d+\/healthz/,
    /OK {3}listener enabled \(hosted by the stage server at http:\/\/127\.0\.0\.1:\d+, LISTEN connection up .*; source: stage server \/healthz\)/,
    /OK {3}function notify_job_variant_state_change\(\)/,
    /OK {3}function notify_job_state_change\(\)/,
    /OK {3}trigger job_variant_state_change_trigger on jobs_variants/,
    /OK {3}trigger job_state_change_trigger on jobs/,
    /OK {3}listener connection .*1 connection/,
    /OK {3}fire test: notification on 'job_variant_state_changed' \(received \d+ ms after commit\)/,
    /OK {3}fire test: notification on 'job_state_changed'/,
  ]) {
    t.match(r.stdout, name);
  }
  const left = await db.pool.query(`SELECT count(*)::int AS n FROM jobs WHERE tenant_id = 'pipeline_status_check'`);
  t.equal(left.rows[0].n, 0, 'the fire test removed its test job');
});

t.test('verify-trigger exits 0 when the pipeline picks the variant up', async (t) => {
  const seeded = await cli(['seed', '--once', '--no-img-gen', '--variants-count', '1', '--json']);
  t.equal(seeded.code, 0, 'exit code 0', { stdout: seeded.stdout, stderr: seeded.stderr });
  const job = JSON.parse(seeded.stdout).created[0];
  const r = await cli(['verify-trigger', job.variantIds[0], '--timeout', '30']);
  t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
  t.match(r.stdout, /before: img_gen\/queued/);
  t.match(r.stdout, /set: {4}img_gen\/done/);
  t.match(r.stdout, /after: {2}(?!img_gen)\w+\/\w+/, 'after: a step past img_gen');
  t.match(r.stdout, /OK: the pipeline picked the variant up/);
  const missing = await cli(['verify-trigger', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /variant 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a not found/);
  // Let this job finish in the background; the next test waits for its own.
});

t.test('seed --once --wait-for-completion waits for real completion', async (t) => {
  const r = await cli(['seed', '--once', '--wait-for-completion', '--variants-count', '2', '--timeout', '240']);
  t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
  t.match(r.stdout, /created job ([0-9a-f-]{36})/);
  t.match(r.stdout, /job [0-9a-f-]{36}: instagram_feed_gen\/done/);
  t.match(r.stdout, /summary: 1 job\(s\) created, 1 completed, 0 failed, 0 timed out/);
  doneJobId = (/created job ([0-9a-f-]{36})/.exec(r.stdout) as RegExpExecArray)[1] as string;
  t.match(await jobState(db.pool, doneJobId), { current_step: 'instagram_feed_gen', status: 'done' });
  // Progress lines were printed while waiting, not only the final state.
  t.ok(r.stdout.split('\n').filter((l) => /^\s+job /.test(l)).length >= 2, 'progress was printed');
});

t.test('monitor on a done job: exit 0, JSON documents with the outputs', async (t) => {
  const r = await cli(['monitor', doneJobId, '5', '0.2', '--json']);
  t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
  const docs = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const last = docs.at(-1);
  t.equal(last.outcome, 'done');
  t.equal(last.job.progress, 10);
  t.equal(last.variants.length, 2);
  for (const v of last.variants) {
    t.equal(v.progress, 10);
    t.same(
      v.timings.map((x: { step: string }) => x.step),
      ['vlm_analyze', 'yolo_detect', 'planner', 'overlay', 'vlm_judge', 'ocr_eval', 'readability_eval', 'iou_eval'],
      'a timing for every variant step',
    );
  }
  t.same(
    last.jobTimings.map((x: { step: string }) => x.step),
    ['ad_copy_gen_kor', 'instagram_feed_gen'],
  );
  t.equal(last.outputs.overlayImages.length, 2);
  t.ok(last.outputs.caption, 'caption');
  t.ok(last.outputs.hashtags.length > 0, 'hashtags');
  t.ok(last.outputs.adCopy?.headlineEng, 'ad copy');
  t.ok(last.outputs.feedImage, 'feed image path');

  const plain = await cli(['monitor', doneJobId, '5', '0.2']);
  t.equal(plain.code, 0);
  t.match(plain.stdout, /job [0-9a-f-]{36}: instagram_feed_gen\/done/);
  t.match(plain.stdout, /Overlay image #1: \//);
  t.match(plain.stdout, /Caption: /);
  t.match(plain.stdout, /Hashtags: #/);
  t.match(plain.stdout, /done in/);
});

t.test('analyze: text, --json with the evaluation numbers, --html with every creative', async (t) => {
  const text = await cli(['analyze', '--job-id', doneJobId]);
  t.equal(text.code, 0, 'exit code 0', { stdout: text.stdout, stderr: text.stderr });
  t.match(text.stdout, /== Job /);
  t.match(text.stdout, /planner \(\w+\): \d+ proposals, chosen rank \d+/);
  t.match(text.stdout, /ocr \(\w+\) headline\/eng: CER \d/);
  t.match(text.stdout, /readability \(\w+\): (pass|FAIL), min contrast \d/);
  t.match(text.stdout, /iou \(\w+\): max IoU \d/);
  t.match(text.stdout, /vlm_judge \(\w+[^)]*\): \d/);
  t.match(text.stdout, /CHOSEN for the feed/);

  const html = join(storage.path, 'report.html');
  const j = await cli(['analyze', '--job-id', doneJobId, '--json', '--html', html]);
  t.equal(j.code, 0, 'exit code 0', { stdout: j.stdout, stderr: j.stderr });
  const report = JSON.parse(j.stdout);
  t.equal(report.jobs.length, 1);
  const job = report.jobs[0];
  t.equal(job.done, true);
  t.equal(job.variants.length, 2);
  t.equal(job.variants.filter((v: { chosen: boolean }) => v.chosen).length, 1, 'one chosen variant');
  for (const v of job.variants) {
    const e = v.evaluations;
    t.type(e.ocr.lines[0].cer, 'number', 'OCR CER');
    t.ok(e.ocr.method, 'OCR method');
    t.type(e.readability.minContrast, 'number', 'readability contrast');
    t.type(e.readability.pass, 'boolean', 'readability pass');
    t.type(e.iou.maxIou, 'number', 'IoU maximum');
    t.type(e.judge.score, 'number', 'judge score');
    t.ok(e.judge.method && e.iou.method && e.readability.method, 'methods');
    t.ok(v.planner.proposals.length >= 1, 'planner proposals');
    t.equal(v.planner.proposals.filter((p: { chosen: boolean }) => p.chosen).length, 1, 'one chosen proposal');
    t.ok(v.overlay.lines.length >= 1, 'overlay layout lines');
  }
  t.ok(job.feed.caption && job.feed.hashtags.length, 'caption and hashtags');

  const page = readFileSync(html, 'utf8');
  for (const v of job.variants) {
    t.match(page, `data-variant-id="${v.id}"`, `variant ${v.order} is in the report`);
    const bytes = readFileSync(v.overlay.imagePath).toString('base64');
    t.ok(page.includes(bytes), `creative of variant ${v.order} embedded`);
  }
  t.ok(page.includes(readFileSync(job.feed.feedImagePath).toString('base64')), 'feed image embedded');
  t.match(page, /class="variant chosen"/);

  const tenant = await cli(['analyze', '--tenant-id', 'pipeline_test_tenant_v2', '--limit', '1', '--json']);
  t.equal(tenant.code, 0);
  t.equal(JSON.parse(tenant.stdout).jobs.length, 1);
  const none = await cli(['analyze', '--tenant-id', 'nobody']);
  t.equal(none.code, 1, 'no job matched');
});

t.test('monitor exit 1 when the iterations run out', async (t) => {
  const seeded = await cli(['seed', '--once', '--no-img-gen', '--variants-count', '1', '--json']);
  const jobId = JSON.parse(seeded.stdout).created[0].jobId;
  const r = await cli(['monitor', jobId, '3', '0.2']);
  t.equal(r.code, 1);
  t.match(r.stdout, /gave up after 3 check\(s\); job at img_gen\/queued/);
  t.match(r.stdout, /hint: 1 variant\(s\) wait at img_gen\/queued/);
});

t.test('cancel stops a job mid-way and nothing further is dispatched; monitor then exits 1', async (t) => {
  const seeded = await cli(['seed', '--once', '--variants-count', '2', '--json']);
  const job = JSON.parse(seeded.stdout).created[0];
  await waitFor(
    async () => {
      const r = await db.pool.query(`SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1`, [job.jobId]);
      return r.rows[0].n >= 2;
    },
    { timeoutMs: 60_000, message: 'the job is under way' },
  );
  const c = await cli(['cancel', job.jobId]);
  t.equal(c.code, 0, 'exit code 0', { stdout: c.stdout, stderr: c.stderr });
  t.match(c.stdout, /cancelled job [0-9a-f-]{36}/);
  t.match(await jobState(db.pool, job.jobId), { status: 'failed', failure_reason: 'cancelled' });
  // Wait until what was in flight at the cancel has ended.
  await waitFor(
    async () => {
      const r = await db.pool.query(
        `SELECT count(*)::int AS n FROM jobs_variants WHERE job_id = $1 AND status IN ('running')`,
        [job.jobId],
      );
      return r.rows[0].n === 0;
    },
    { timeoutMs: 60_000, message: 'in-flight steps ended' },
  );
  const runsAfterCancel = (
    await db.pool.query(`SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1`, [job.jobId])
  ).rows[0].n;
  const states = (
    await db.pool.query(
      'SELECT job_variants_id, current_step, status FROM jobs_variants WHERE job_id = $1 ORDER BY 1',
      [job.jobId],
    )
  ).rows;
  // Stimulus: a variant of the cancelled job marked done (would normally trigger its next step),
  // then a control job; once the control job moved, the listener has handled the earlier notification.
  const v0 = states[0];
  await db.pool.query(`UPDATE jobs_variants SET status = 'done' WHERE job_variants_id = $1`, [v0.job_variants_id]);
  const control = await cli(['seed', '--once', '--variants-count', '1', '--json']);
  const controlVariant = JSON.parse(control.stdout).created[0].variantIds[0];
  await waitFor(async () => (await variantState(db.pool, controlVariant)).current_step !== 'img_gen', {
    timeoutMs: 60_000,
    message: 'control job picked up',
  });
  const runsLater = (
    await db.pool.query(`SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1`, [job.jobId])
  ).rows[0].n;
  t.equal(runsLater, runsAfterCancel, 'no step dispatched for the cancelled job');
  const v0now = await variantState(db.pool, v0.job_variants_id);
  t.match(v0now, { current_step: v0.current_step, status: 'done' }, 'the variant did not move on');

  const m = await cli(['monitor', job.jobId, '5', '0.2']);
  t.equal(m.code, 1);
  t.match(m.stdout, /failed: cancelled/);
  const again = await cli(['cancel', job.jobId]);
  t.equal(again.code, 1, 'cancelling twice reports that nothing was cancelled');
});

t.test('retry brings a failed job to completion', async (t) => {
  // A photo only this job uses (storage is content-addressed), removed before img_gen is marked done.
  const seeded = await cli([
    'seed',
    '--once',
    '--no-img-gen',
    '--variants-count',
    '1',
    '--image',
    samplePhotoPath('chelsea.png'),
    '--json',
  ]);
  t.equal(seeded.code, 0, 'exit code 0', { stdout: seeded.stdout, stderr: seeded.stderr });
  const job = JSON.parse(seeded.stdout).created[0];
  const file = join(storage.path, job.imageKey);
  await rm(file);
  await markImgGenDone(db.pool, job.variantIds);
  await waitFor(async () => (await jobState(db.pool, job.jobId)).failure_reason !== null, {
    timeoutMs: 60_000,
    message: 'the job gave up',
  });
  const failed = await variantState(db.pool, job.variantIds[0]);
  t.match(failed, { current_step: 'vlm_analyze', status: 'failed' });
  const noRetryYet = await cli(['monitor', job.jobId, '2', '0.2']);
  t.equal(noRetryYet.code, 1, 'monitor: failed');
  await copyFile(samplePhotoPath('chelsea.png'), file);
  const r = await cli(['retry', job.jobId]);
  t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
  t.match(r.stdout, /re-queued variant [0-9a-f-]{36} at vlm_analyze/);
  const m = await cli(['monitor', job.jobId, '600', '0.2']);
  t.equal(m.code, 0, 'exit code 0', { stdout: m.stdout, stderr: m.stderr });
  t.match(await jobState(db.pool, job.jobId), {
    current_step: 'instagram_feed_gen',
    status: 'done',
    failure_reason: null,
  });
  const nothing = await cli(['retry', job.jobId]);
  t.equal(nothing.code, 1, 'nothing left to retry');
  t.match(nothing.stdout, /nothing to retry/);
});

t.test('status names the missing trigger when one is dropped (exit 1)', async (t) => {
  await db.pool.query('DROP TRIGGER job_state_change_trigger ON jobs');
  const r = await cli(['status']);
  t.equal(r.code, 1);
  t.match(r.stdout, /FAIL trigger job_state_change_trigger on jobs: missing -> run feedly-pipeline migrate --reapply/);
  t.match(r.stdout, /OK {3}trigger job_variant_state_change_trigger on jobs_variants/);
  const json = await cli(['status', '--json']);
  t.equal(json.code, 1);
  const parsed = JSON.parse(json.stdout);
  t.equal(parsed.ok, false);
  t.same(
    parsed.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { name: string }) => c.name),
    ['trigger job_state_change_trigger on jobs'],
  );
  const m = await cli(['migrate', '--reapply']);
  t.equal(m.code, 0, 'migrate --reapply', { stderr: m.stderr });
  t.match(m.stdout, /applied migration\(s\) 1, 2/);
  t.equal((await cli(['status'])).code, 0, 'healthy again after migrate');
});

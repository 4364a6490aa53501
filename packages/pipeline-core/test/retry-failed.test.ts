// Manual retry against a real PostgreSQL: the bulk retry's selection (retryFailedJobs)
// and the sibling rule of retryJob (docs/cli-retry.md).
import pg from 'pg';
import t from 'tap';
import { charLength, INPUT_CAPS, inputCapViolations } from '../src/inputCaps.js';
import { escapeLike, retryFailedJobs } from '../src/sql/retryFailedJobs.js';
import { retryJob } from '../src/sql/retryJob.js';
import { jobState, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

const HOUR = 3_600_000;
let tenantSeq = 0;
const newTenant = () => `retry_tenant_${++tenantSeq}`;

/** A job failed for good `agoMs` ago with `reason`, its one variant failed at vlm_judge. */
async function failedJob(tenantId: string, reason: string, agoMs: number): Promise<string> {
  const s = await seedJob(db.pool, { tenantId, variants: 1, variantStep: 'vlm_judge', variantStatus: 'failed' });
  // Setting failure_reason stamps failed_at (trigger of 0004); failed_at alone does not fire it, so it can be backdated.
  await db.pool.query(`UPDATE jobs SET status = 'failed', failure_reason = $2 WHERE job_id = $1`, [s.jobId, reason]);
  await db.pool.query(`UPDATE jobs SET failed_at = now() - $2 * interval '1 millisecond' WHERE job_id = $1`, [
    s.jobId,
    agoMs,
  ]);
  return s.jobId;
}

/** Every column retry can change, of the job and its variants. */
async function snapshot(jobId: string): Promise<unknown> {
  const j = await db.pool.query(
    `SELECT status, current_step, attempt, attempt_base, failure_reason, failed_at, dispatch_requested_at, claimed_by
       FROM jobs WHERE job_id = $1`,
    [jobId],
  );
  const v = await db.pool.query(
    `SELECT job_variants_id, status, current_step, attempt, attempt_base, given_up_at, dispatch_requested_at, claimed_by
       FROM jobs_variants WHERE job_id = $1 ORDER BY job_variants_id`,
    [jobId],
  );
  return { job: j.rows, variants: v.rows };
}

const since = (agoMs: number) => new Date(Date.now() - agoMs);

t.test('retryFailedJobs selects by failed_at, tenant and reason, oldest failure first', async (t) => {
  const tenant = newTenant();
  const other = newTenant();
  const old = await failedJob(tenant, 'planner failed after 3 attempts: boom', 5 * HOUR);
  const mid = await failedJob(tenant, 'OCR_EVAL failed after 3 attempts: Model Timeout', 2 * HOUR);
  const recent = await failedJob(tenant, 'overlay failed after 3 attempts: out of memory', 10 * 60_000);
  const elsewhere = await failedJob(other, 'planner failed after 3 attempts: boom', HOUR);
  const cancelled = await failedJob(tenant, 'cancelled', 30 * 60_000);

  const all = await retryFailedJobs(db.pool, { failedSince: since(6 * HOUR), tenantId: tenant, dryRun: true });
  t.same(all.jobIds, [old, mid, recent], 'oldest first, cancelled left out');
  t.equal(all.matched, 3);
  t.equal(all.truncated, false);
  t.same(
    all.jobs.map((j) => j.failureReason),
    [
      'planner failed after 3 attempts: boom',
      'OCR_EVAL failed after 3 attempts: Model Timeout',
      'overlay failed after 3 attempts: out of memory',
    ],
  );
  t.ok(all.jobs.every((j) => j.tenantId === tenant && j.failedAt instanceof Date));

  const lastThree = await retryFailedJobs(db.pool, { failedSince: since(3 * HOUR), tenantId: tenant, dryRun: true });
  t.same(lastThree.jobIds, [mid, recent], 'failed_at before failedSince left out');

  const anyTenant = await retryFailedJobs(db.pool, { failedSince: since(6 * HOUR), dryRun: true });
  t.ok(anyTenant.jobIds.includes(elsewhere) && anyTenant.jobIds.includes(old), 'no tenant: every tenant');
  t.notOk(anyTenant.jobIds.includes(cancelled), 'no tenant: still no cancelled job');

  const ci = await retryFailedJobs(db.pool, {
    failedSince: since(6 * HOUR),
    tenantId: tenant,
    reasonLike: 'model timeout',
    dryRun: true,
  });
  t.same(ci.jobIds, [mid], 'reasonLike is a case-insensitive substring');
  const ci2 = await retryFailedJobs(db.pool, {
    failedSince: since(6 * HOUR),
    tenantId: tenant,
    reasonLike: 'ocr_EVAL',
    dryRun: true,
  });
  t.same(ci2.jobIds, [mid]);

  const limited = await retryFailedJobs(db.pool, {
    failedSince: since(6 * HOUR),
    tenantId: tenant,
    limit: 2,
    dryRun: true,
  });
  t.same(limited.jobIds, [old, mid], 'limit keeps the oldest');
  t.equal(limited.matched, 2);
  t.equal(limited.truncated, true, 'says that more matched');
});

t.test('reasonLike: LIKE wildcards are plain characters', async (t) => {
  const tenant = newTenant();
  const percent = await failedJob(tenant, 'planner failed after 3 attempts: disk 100% full', HOUR);
  const underscore = await failedJob(tenant, 'ocr_eval failed after 3 attempts: x', HOUR);
  await failedJob(tenant, 'ocrXeval failed after 3 attempts: x', HOUR);
  await failedJob(tenant, 'planner failed after 3 attempts: 100 full', HOUR);
  const bang = await failedJob(tenant, 'overlay failed after 3 attempts: no!', HOUR);
  const q = (reasonLike: string) =>
    retryFailedJobs(db.pool, { failedSince: since(2 * HOUR), tenantId: tenant, reasonLike, dryRun: true });
  t.same((await q('100%')).jobIds, [percent], '% is literal');
  t.same((await q('ocr_eval')).jobIds, [underscore], '_ is literal');
  t.same((await q('no!')).jobIds, [bang], 'the escape character is literal');
  t.equal(escapeLike('a%b_c!d'), 'a!%b!_c!!d');
});

t.test('cancelled jobs: left out unless reasonLike matches "cancelled"', async (t) => {
  const tenant = newTenant();
  const cancelled = await failedJob(tenant, 'cancelled', HOUR);
  const failed = await failedJob(tenant, 'planner failed after 3 attempts: boom', HOUR / 2);
  const base = { failedSince: since(2 * HOUR), tenantId: tenant, dryRun: true };
  t.same((await retryFailedJobs(db.pool, base)).jobIds, [failed], 'left out by default');
  t.same((await retryFailedJobs(db.pool, { ...base, reasonLike: 'CANCELLED' })).jobIds, [cancelled], 'included');
  t.same((await retryFailedJobs(db.pool, { ...base, reasonLike: 'cancel' })).jobIds, [cancelled], 'a part of it too');
  t.same((await retryFailedJobs(db.pool, { ...base, reasonLike: 'boom' })).jobIds, [failed], 'not by another reason');
});

t.test('dry run changes nothing', async (t) => {
  const tenant = newTenant();
  const a = await failedJob(tenant, 'planner failed after 3 attempts: boom', HOUR);
  const b = await failedJob(tenant, 'overlay failed after 3 attempts: boom', HOUR / 2);
  const before = [await snapshot(a), await snapshot(b)];
  const r = await retryFailedJobs(db.pool, { failedSince: since(2 * HOUR), tenantId: tenant, dryRun: true });
  t.match(r, { dryRun: true, matched: 2, jobIds: [a, b], retried: [], errors: [] });
  t.same([await snapshot(a), await snapshot(b)], before, 'rows unchanged');
});

t.test('a real run retries each job; one that cannot be retried is reported and rolled back', async (t) => {
  const tenant = newTenant();
  const a = await failedJob(tenant, 'planner failed after 3 attempts: boom', 3 * HOUR);
  const bad = await failedJob(tenant, 'planner failed after 3 attempts: boom', 2 * HOUR);
  const c = await failedJob(tenant, 'planner failed after 3 attempts: boom', HOUR);
  // A real error inside retryJob's transaction, for one job only: a trigger that refuses its variants' update.
  await db.pool.query(`
    CREATE TABLE test_refused_jobs (job_id uuid PRIMARY KEY);
    CREATE FUNCTION test_refuse_retry() RETURNS trigger AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM test_refused_jobs WHERE job_id = NEW.job_id) THEN
        RAISE EXCEPTION 'refused by test trigger';
      END IF;
      RETURN NEW;
    END; $$ LANGUAGE plpgsql;
    CREATE TRIGGER test_refuse_retry BEFORE UPDATE ON jobs_variants FOR EACH ROW EXECUTE FUNCTION test_refuse_retry();
  `);
  t.teardown(() =>
    db.pool.query(
      'DROP TRIGGER test_refuse_retry ON jobs_variants; DROP FUNCTION test_refuse_retry(); DROP TABLE test_refused_jobs',
    ),
  );
  await db.pool.query('INSERT INTO test_refused_jobs (job_id) VALUES ($1)', [bad]);
  const badBefore = await snapshot(bad);
  const r = await retryFailedJobs(db.pool, { failedSince: since(4 * HOUR), tenantId: tenant });
  t.equal(r.dryRun, false);
  t.same(r.jobIds, [a, bad, c]);
  t.same(
    r.retried.map((x) => x.jobId),
    [a, c],
    'the others were retried',
  );
  t.match(r.retried[0], {
    previousFailureReason: 'planner failed after 3 attempts: boom',
    requeued: [{ step: 'vlm_judge', attempt: 2 }],
  });
  t.same(r.errors.length, 1);
  t.match(r.errors[0], { jobId: bad, error: /refused by test trigger/ });
  t.same(await snapshot(bad), badBefore, 'the failed retry changed nothing');
  for (const id of [a, c]) {
    t.match(await jobState(db.pool, id), { failure_reason: null }, 'failure cleared');
    const f = await db.pool.query('SELECT failed_at FROM jobs WHERE job_id = $1', [id]);
    t.equal(f.rows[0].failed_at, null, 'failed_at cleared with it');
  }
  const again = await retryFailedJobs(db.pool, { failedSince: since(4 * HOUR), tenantId: tenant, dryRun: true });
  t.same(again.jobIds, [bad], 'only the one still failed matches again');
});

t.test('retryFailedJobs validates its options', async (t) => {
  const failedSince = since(HOUR);
  await t.rejects(retryFailedJobs(db.pool, { failedSince: new Date('nope') }), /failedSince must be a valid Date/);
  await t.rejects(
    retryFailedJobs(db.pool, { failedSince: '2026-01-01' as unknown as Date }),
    /failedSince must be a valid Date/,
  );
  for (const limit of [0, 1001, 1.5, Number.NaN]) {
    await t.rejects(retryFailedJobs(db.pool, { failedSince, limit }), /limit must be an integer from 1 to 1000/);
  }
  await t.rejects(retryFailedJobs(db.pool, { failedSince, reasonLike: '' }), /reasonLike must be a non-empty string/);
  await t.rejects(retryFailedJobs(db.pool, { failedSince, reasonLike: 'x'.repeat(501) }), /at most 500/);
  await t.rejects(retryFailedJobs(db.pool, { failedSince, tenantId: '' }), /tenantId must be a non-empty/);
  await t.rejects(retryFailedJobs(db.pool, { failedSince, tenantId: 't'.repeat(201) }), /at most 200/);
  const ok = await retryFailedJobs(db.pool, { failedSince, limit: 1000, tenantId: newTenant(), dryRun: true });
  t.equal(ok.matched, 0, 'limit 1000 is accepted');
});

t.test('jobIds: only those jobs, still only failed ones matching the other conditions', async (t) => {
  const tenant = newTenant();
  const a = await failedJob(tenant, 'planner failed after 3 attempts: boom', 3 * HOUR);
  const b = await failedJob(tenant, 'overlay failed after 3 attempts: oom', 2 * HOUR);
  const c = await failedJob(tenant, 'overlay failed after 3 attempts: oom', HOUR);
  const cancelled = await failedJob(tenant, 'cancelled', HOUR);
  const running = (await seedJob(db.pool, { tenantId: tenant, variants: 1 })).jobId;
  const r = await retryFailedJobs(db.pool, {
    failedSince: new Date(0),
    jobIds: [c, a, cancelled, running],
    dryRun: true,
  });
  t.same(r.jobIds, [a, c], 'the failed ones among the ids, oldest failure first; b was not asked for');
  const other = await retryFailedJobs(db.pool, {
    failedSince: new Date(0),
    jobIds: [a, b],
    tenantId: newTenant(),
    dryRun: true,
  });
  t.equal(other.matched, 0, 'the tenant condition still applies');
  const none = await retryFailedJobs(db.pool, { failedSince: new Date(0), jobIds: [], dryRun: true });
  t.equal(none.matched, 0, 'an empty list selects nothing');
  await t.rejects(
    retryFailedJobs(db.pool, { failedSince: new Date(0), jobIds: ['not-a-uuid'] }),
    /jobIds must be an array of job ids/,
  );
  await t.rejects(
    retryFailedJobs(db.pool, { failedSince: new Date(0), jobIds: [a, b, c], limit: 2 }),
    /more than the limit 2/,
  );
});

/** Variant columns the sibling rule writes. */
async function variantMarks(id: string) {
  const r = await db.pool.query(
    `SELECT current_step, status, attempt, dispatch_requested_at, claimed_by, updated_at
       FROM jobs_variants WHERE job_variants_id = $1`,
    [id],
  );
  return r.rows[0];
}

/** Puts a variant at (step, status), claimed by `claimedBy`, last updated two days ago. */
async function placeVariant(id: string, step: string, status: string, claimedBy: string | null = 'old-instance') {
  await db.pool.query(
    `UPDATE jobs_variants SET current_step = $2, status = $3, claimed_by = $4 WHERE job_variants_id = $1`,
    [id, step, status, claimedBy],
  );
  await db.pool.query(`UPDATE jobs_variants SET updated_at = now() - interval '2 days' WHERE job_variants_id = $1`, [
    id,
  ]);
}

t.test('retryJob marks the siblings of a job failed two days ago for dispatch, whatever their age', async (t) => {
  const s = await seedJob(db.pool, { tenantId: newTenant(), variants: 7 });
  const [failedA, doneB, runningC, iouD, queuedE, imgGenF, uploadG] = s.variantIds as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  await placeVariant(failedA, 'vlm_judge', 'failed');
  await db.pool.query(`UPDATE jobs_variants SET attempt = 3, given_up_at = now() WHERE job_variants_id = $1`, [
    failedA,
  ]);
  await placeVariant(doneB, 'ocr_eval', 'done');
  await placeVariant(runningC, 'overlay', 'running', 'stage-claimer');
  await placeVariant(iouD, 'iou_eval', 'done');
  await placeVariant(queuedE, 'planner', 'queued', 'dead-instance');
  await placeVariant(imgGenF, 'img_gen', 'done');
  await placeVariant(uploadG, 'user_img_input', 'done');
  await db.pool.query(
    `UPDATE jobs SET status = 'failed', failure_reason = 'vlm_judge failed after 3 attempts: x'
    WHERE job_id = $1`,
    [s.jobId],
  );
  await db.pool.query(`UPDATE jobs SET failed_at = now() - interval '2 days' WHERE job_id = $1`, [s.jobId]);
  const before = {
    runningC: await variantMarks(runningC),
    iouD: await variantMarks(iouD),
    uploadG: await variantMarks(uploadG),
  };
  const dbNow = (await db.pool.query<{ now: Date }>('SELECT now()')).rows[0]!.now;

  const r = await retryJob(db.pool, s.jobId);

  t.equal(r.previousFailureReason, 'vlm_judge failed after 3 attempts: x');
  t.same(r.requeued, [
    { jobVariantsId: failedA, step: 'vlm_judge', attempt: 4 },
    { jobVariantsId: queuedE, step: 'planner', attempt: 1 },
  ]);
  t.same(
    r.siblings.map((x) => [x.jobVariantsId, x.step, x.status]).sort(),
    [
      [doneB, 'ocr_eval', 'done'],
      [queuedE, 'planner', 'queued'],
      [imgGenF, 'img_gen', 'done'],
    ].sort(),
    'the siblings that need a dispatch',
  );

  const a = await variantMarks(failedA);
  t.match(a, { current_step: 'vlm_judge', status: 'queued', attempt: 4, claimed_by: null });
  t.ok(a.dispatch_requested_at >= dbNow, 'the failed variant is re-queued with a dispatch request');

  const b = await variantMarks(doneB);
  t.match(b, { current_step: 'ocr_eval', status: 'done', attempt: 1, claimed_by: null }, 'state unchanged');
  t.ok(b.dispatch_requested_at >= dbNow, 'the two-day-old (ocr_eval, done) sibling gets a dispatch request');
  t.ok(Date.now() - b.updated_at.getTime() > 47 * HOUR, 'and is still two days old: only the mark brings it back');

  const e = await variantMarks(queuedE);
  t.match(e, { current_step: 'planner', status: 'queued', attempt: 1, claimed_by: null }, 'claim of a dead instance');
  t.ok(e.dispatch_requested_at >= dbNow, 'the queued sibling is re-dispatched');

  const f = await variantMarks(imgGenF);
  t.ok(f.dispatch_requested_at >= dbNow, '(img_gen, done) needs its vlm_analyze claimed');

  t.same(await variantMarks(runningC), before.runningC, 'running sibling untouched (it belongs to the stage)');
  t.same(await variantMarks(iouD), before.iouD, '(iou_eval, done) untouched: it waits for the fan-in');
  t.same(await variantMarks(uploadG), before.uploadG, '(user_img_input, done) untouched: it waits for the YE part');

  t.match(await jobState(db.pool, s.jobId), { failure_reason: null, status: 'queued' });
});

t.test('retryJob of one variant also marks the siblings when it clears the job failure', async (t) => {
  const s = await seedJob(db.pool, { tenantId: newTenant(), variants: 3 });
  const [x, y, z] = s.variantIds as [string, string, string];
  await placeVariant(x, 'planner', 'failed');
  await placeVariant(y, 'planner', 'failed');
  await placeVariant(z, 'yolo_detect', 'done');
  await db.pool.query(`UPDATE jobs SET status = 'failed', failure_reason = 'planner failed' WHERE job_id = $1`, [
    s.jobId,
  ]);
  const r = await retryJob(db.pool, s.jobId, { variantId: x });
  t.same(r.requeued, [{ jobVariantsId: x, step: 'planner', attempt: 2 }], 'only that variant re-queued');
  t.same(
    r.siblings.map((v) => v.jobVariantsId),
    [z],
  );
  t.ok((await variantMarks(z)).dispatch_requested_at, 'done sibling marked');
  t.match(await variantMarks(y), { status: 'failed', dispatch_requested_at: null }, 'the other failed one stays');
});

t.test('retryJob of a job that did not fail for good marks no sibling', async (t) => {
  const s = await seedJob(db.pool, { tenantId: newTenant(), variants: 3 });
  const [x, y, z] = s.variantIds as [string, string, string];
  await placeVariant(x, 'planner', 'failed');
  await placeVariant(y, 'planner', 'done', 'live-instance');
  await placeVariant(z, 'overlay', 'queued', 'live-instance');
  const r = await retryJob(db.pool, s.jobId);
  t.same(r.requeued, [{ jobVariantsId: x, step: 'planner', attempt: 2 }]);
  t.same(r.siblings, []);
  t.match(await variantMarks(y), { dispatch_requested_at: null, claimed_by: 'live-instance' }, 'live rows left alone');
  t.match(await variantMarks(z), { dispatch_requested_at: null, claimed_by: 'live-instance' });
});

t.test('retryJob at the job level clears claimed_by and still notifies job_state_changed', async (t) => {
  const s = await seedJob(db.pool, {
    tenantId: newTenant(),
    variants: 2,
    variantStep: 'iou_eval',
    variantStatus: 'done',
    jobStep: 'ad_copy_gen_kor',
    jobStatus: 'failed',
  });
  await db.pool.query(
    `UPDATE jobs SET failure_reason = 'ad_copy_gen_kor failed after 3 attempts: x', attempt = 3, claimed_by = 'gone'
      WHERE job_id = $1`,
    [s.jobId],
  );
  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  t.teardown(() => listener.end());
  const payloads: Array<Record<string, unknown>> = [];
  listener.on('notification', (n) => payloads.push(JSON.parse(n.payload ?? '{}')));
  await listener.query('LISTEN job_state_changed');

  const r = await retryJob(db.pool, s.jobId);
  t.same(r.requeued, [{ jobVariantsId: null, step: 'ad_copy_gen_kor', attempt: 4 }]);
  t.same(r.siblings, [], 'variants at (iou_eval, done) are not siblings to dispatch');
  const j = await db.pool.query(
    'SELECT status, attempt, attempt_base, claimed_by, dispatch_requested_at, failure_reason FROM jobs WHERE job_id = $1',
    [s.jobId],
  );
  t.match(j.rows[0], { status: 'queued', attempt: 4, attempt_base: 3, claimed_by: null, failure_reason: null });
  t.ok(j.rows[0].dispatch_requested_at);
  await waitFor(() => payloads.some((p) => p.job_id === s.jobId && p.manual === 'retry'), {
    timeoutMs: 10_000,
    message: 'job_state_changed with manual: retry',
  });
  for (const v of s.variantIds) {
    t.match(await variantMarks(v), { dispatch_requested_at: null }, 'variants untouched');
  }
});

t.test('a cancelled job retried by reason resumes its siblings', async (t) => {
  const tenant = newTenant();
  const s = await seedJob(db.pool, { tenantId: tenant, variants: 2, variantStep: 'planner', variantStatus: 'done' });
  await db.pool.query(`UPDATE jobs SET status = 'failed', failure_reason = 'cancelled' WHERE job_id = $1`, [s.jobId]);
  const r = await retryFailedJobs(db.pool, { failedSince: since(HOUR), tenantId: tenant, reasonLike: 'cancelled' });
  t.same(r.jobIds, [s.jobId]);
  t.same(r.errors, []);
  t.equal(r.retried[0]?.previousFailureReason, 'cancelled');
  t.same(r.retried[0]?.siblings.map((v) => v.jobVariantsId).sort(), [...s.variantIds].sort());
  t.match(await jobState(db.pool, s.jobId), { failure_reason: null });
});

t.test('INPUT_CAPS: characters, not bytes', async (t) => {
  t.same(INPUT_CAPS, { tenant_id: 200, product_name: 100, tagline_kor: 100, ad_copy_eng: 300, desc_kor: 2000 });
  t.ok(Object.isFrozen(INPUT_CAPS));
  const korean = '가'.repeat(2000);
  t.equal(charLength(korean), 2000);
  t.equal(Buffer.byteLength(korean), 6000, 'three bytes each in UTF-8');
  t.same(inputCapViolations({ desc_kor: korean }), []);
  t.same(inputCapViolations({ desc_kor: `${korean}가` }), [{ input: 'desc_kor', cap: 2000, length: 2001 }]);
  t.equal(charLength('😀'.repeat(100)), 100, 'a surrogate pair is one character');
  t.same(inputCapViolations({ product_name: '😀'.repeat(100) }), []);
  t.same(inputCapViolations({ tenant_id: 't'.repeat(201), tagline_kor: null, ad_copy_eng: undefined }), [
    { input: 'tenant_id', cap: 200, length: 201 },
  ]);
  // The database counts the same way.
  const n = await db.pool.query<{ n: number }>('SELECT char_length($1)::int AS n', ['😀가'.repeat(50)]);
  t.equal(n.rows[0]?.n, charLength('😀가'.repeat(50)));
});

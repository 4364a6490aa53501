import t, { type Test } from 'tap';
import pg from 'pg';

import { cancelJob } from '../src/sql/cancelJob.js';
import { claimFanIn } from '../src/sql/claimFanIn.js';
import { claimJobNext } from '../src/sql/claimJobNext.js';
import { claimVariant, claimVariants } from '../src/sql/claimVariant.js';
import { giveUp } from '../src/sql/giveUp.js';
import { rescueStep } from '../src/sql/rescueStep.js';
import { retryJob } from '../src/sql/retryJob.js';
import { retryStep } from '../src/sql/retryStep.js';
import { stageFinishDone, stageFinishFailed, stageStart } from '../src/sql/stage.js';
import { jobState, seedJob, testDb, variantState } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const I = 'test-instance';

t.test('variant claim: exactly one of many concurrent claimers wins, and the claim is logged', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'img_gen', variantStatus: 'done' });
  const id = s.variantIds[0]!;
  const results = await Promise.all(
    Array.from({ length: 20 }, () =>
      claimVariant(db.pool, { jobVariantsId: id, prev: 'img_gen', trigger: 'notify', instanceId: I }),
    ),
  );
  const won = results.filter((r) => r !== null);
  t.equal(won.length, 1, 'one winner');
  t.match(won[0], { jobId: s.jobId, jobVariantsId: id, step: 'vlm_analyze', attempt: 1, tenantId: s.tenantId });
  t.match(await variantState(db.pool, id), { current_step: 'vlm_analyze', status: 'queued', attempt: 1 });
  const runs = await db.pool.query(
    'SELECT step, attempt, trigger, state FROM pipeline_step_runs WHERE job_variants_id = $1',
    [id],
  );
  t.same(runs.rows, [{ step: 'vlm_analyze', attempt: 1, trigger: 'notify', state: 'dispatched' }]);
});

t.test('prepared claims: named statements, the same rows and guards as the planned ones', async (t) => {
  // A pool that records what it was asked to run (the claims must go out as named statements).
  const names: Array<string | undefined> = [];
  const recording = {
    query: (q: string | pg.QueryConfig, values?: unknown[]) => {
      names.push(typeof q === 'string' ? undefined : q.name);
      return typeof q === 'string' ? db.pool.query(q, values) : db.pool.query(q);
    },
  } as unknown as pg.Pool;
  const s = await seedJob(db.pool, { variants: 4, variantStep: 'img_gen', variantStatus: 'done' });
  const [a, b, c, d] = s.variantIds as [string, string, string, string];
  // Each statement twice, so that a pooled connection runs an already prepared statement too.
  for (const id of [a, b]) {
    const won = await claimVariant(
      recording,
      { jobVariantsId: id, prev: 'img_gen', trigger: 'notify', instanceId: I },
      { prepared: true },
    );
    t.match(won, { jobVariantsId: id, step: 'vlm_analyze', attempt: 1, tenantId: s.tenantId });
    t.ok(won?.runId, 'logged in the run log, in the same statement');
  }
  const lost = await claimVariant(
    recording,
    { jobVariantsId: a, prev: 'img_gen', trigger: 'notify', instanceId: I },
    { prepared: true },
  );
  t.equal(lost, null, 'the guard holds: a claimed row is not claimed again');
  for (const id of [c, d]) {
    const got = await claimVariants(
      recording,
      { items: [{ jobVariantsId: id, prev: 'img_gen' }], trigger: 'recovery', instanceId: I },
      { prepared: true },
    );
    t.equal(got.length, 1);
  }
  const j = await seedJob(db.pool, { variants: 1, jobStep: 'ad_copy_gen_kor', jobStatus: 'done' });
  const next = await claimJobNext(
    recording,
    { jobId: j.jobId, prev: 'ad_copy_gen_kor', trigger: 'notify', instanceId: I },
    { prepared: true },
  );
  t.match(next, { jobId: j.jobId, step: 'instagram_feed_gen', attempt: 1 }, 'the job-level claim, prepared');
  const f = await seedJob(db.pool, { variants: 2, variantStep: 'iou_eval', variantStatus: 'done' });
  const fanned = await claimFanIn(
    recording,
    { jobId: f.jobId, policy: 'all', trigger: 'fan_in', instanceId: I },
    { prepared: true },
  );
  t.match(fanned, { jobId: f.jobId, step: 'ad_copy_gen_kor', attempt: 1 }, 'the fan-in claim, prepared');
  t.same(
    [...new Set(names)].sort(),
    ['feedly_claim_fan_in', 'feedly_claim_job_next', 'feedly_claim_variant', 'feedly_claim_variants'],
    'only named statements were sent',
  );
  const runs = await db.pool.query('SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1', [s.jobId]);
  t.equal(runs.rows[0].n, 4, 'one run row per claim');
  t.same(await claimVariant(db.pool, { jobVariantsId: c, prev: 'img_gen', trigger: 'notify', instanceId: I }), null);
});

t.test('batch claim (recovery): only rows done with that step, each once against concurrent claimers', async (t) => {
  const a = await seedJob(db.pool, { variants: 30, variantStep: 'yolo_detect', variantStatus: 'done' });
  const b = await seedJob(db.pool, { variants: 2, variantStep: 'yolo_detect', variantStatus: 'running' });
  const ids = [...a.variantIds, ...b.variantIds];
  // Two sweeps with the whole set and a live claim per row, all at once.
  const [one, two, ...singles] = await Promise.all([
    claimVariants(db.pool, {
      items: ids.map((id) => ({ jobVariantsId: id, prev: 'yolo_detect' as const })),
      trigger: 'recovery',
      instanceId: 'sweep-1',
    }),
    claimVariants(db.pool, {
      items: [...ids].reverse().map((id) => ({ jobVariantsId: id, prev: 'yolo_detect' as const })),
      trigger: 'recovery',
      instanceId: 'sweep-2',
    }),
    ...a.variantIds.map((id) =>
      claimVariant(db.pool, { jobVariantsId: id, prev: 'yolo_detect', trigger: 'notify', instanceId: 'live' }),
    ),
  ]);
  const won = [...one, ...two, ...singles.filter((c) => c !== null)];
  t.equal(won.length, 30, 'each done variant claimed once');
  t.same(new Set(won.map((c) => c.jobVariantsId)), new Set(a.variantIds), 'exactly the done ones');
  t.ok(
    won.every((c) => c.step === 'planner' && c.attempt === 1 && c.tenantId === a.tenantId),
    'claimed for the successor',
  );
  const runs = await db.pool.query(
    `SELECT job_variants_id::text AS id, run_id::text FROM pipeline_step_runs WHERE job_id = $1`,
    [a.jobId],
  );
  t.equal(runs.rowCount, 30, 'one run row per claim');
  const runOf = new Map(runs.rows.map((r) => [r.id, r.run_id]));
  t.ok(
    won.every((c) => runOf.get(c.jobVariantsId as string) === c.runId),
    'each claim carries its own run row',
  );
  t.match(await variantState(db.pool, b.variantIds[0]!), { current_step: 'yolo_detect', status: 'running' });
  t.same(await claimVariants(db.pool, { items: [], trigger: 'recovery', instanceId: I }), []);
});

t.test('batch claim of mixed steps (one notification tick): each row for its own successor, guarded', async (t) => {
  const a = await seedJob(db.pool, { variants: 2, variantStep: 'img_gen', variantStatus: 'done' });
  const b = await seedJob(db.pool, { variants: 2, variantStep: 'ocr_eval', variantStatus: 'done' });
  const c = await seedJob(db.pool, { variants: 1, variantStep: 'planner', variantStatus: 'running' });
  const won = await claimVariants(db.pool, {
    items: [
      ...a.variantIds.map((id) => ({ jobVariantsId: id, prev: 'img_gen' as const })),
      ...b.variantIds.map((id) => ({ jobVariantsId: id, prev: 'ocr_eval' as const })),
      { jobVariantsId: c.variantIds[0]!, prev: 'planner' as const },
      { jobVariantsId: b.variantIds[0]!, prev: 'img_gen' as const },
      { jobVariantsId: a.variantIds[0]!, prev: 'iou_eval' as const },
    ],
    trigger: 'notify',
    instanceId: I,
  });
  t.same(
    won.map((w) => [w.jobVariantsId, w.step]).sort(),
    [...a.variantIds.map((id) => [id, 'vlm_analyze']), ...b.variantIds.map((id) => [id, 'readability_eval'])].sort(),
    'each done row claimed once for its successor; a running row, a stale prev and iou_eval are not claimed',
  );
});

t.test('a row set back to done by hand is claimed again (no unique key swallows a re-run)', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'planner', variantStatus: 'done' });
  const id = s.variantIds[0]!;
  t.ok(await claimVariant(db.pool, { jobVariantsId: id, prev: 'planner', trigger: 'notify', instanceId: I }));
  await db.pool.query(`UPDATE jobs_variants SET current_step = 'planner', status = 'done' WHERE job_variants_id = $1`, [
    id,
  ]);
  t.ok(
    await claimVariant(db.pool, { jobVariantsId: id, prev: 'planner', trigger: 'notify', instanceId: I }),
    'second run claimed',
  );
  const n = await db.pool.query('SELECT count(*)::int AS n FROM pipeline_step_runs WHERE job_variants_id = $1', [id]);
  t.equal(n.rows[0].n, 2);
});

t.test('iou_eval done is not a variant claim, and a cancelled job is never claimed', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'iou_eval', variantStatus: 'done' });
  t.equal(
    await claimVariant(db.pool, {
      jobVariantsId: s.variantIds[0]!,
      prev: 'iou_eval',
      trigger: 'notify',
      instanceId: I,
    }),
    null,
  );
  const c = await seedJob(db.pool, { variants: 1, variantStep: 'img_gen', variantStatus: 'done' });
  t.match(await cancelJob(db.pool, c.jobId), { cancelled: true });
  t.equal(
    await claimVariant(db.pool, { jobVariantsId: c.variantIds[0]!, prev: 'img_gen', trigger: 'notify', instanceId: I }),
    null,
  );
  t.match(await jobState(db.pool, c.jobId), { status: 'failed', failure_reason: 'cancelled' });
  t.match(
    await cancelJob(db.pool, c.jobId),
    { cancelled: false, failureReason: 'cancelled' },
    'cancel twice is a no-op',
  );
  await t.rejects(cancelJob(db.pool, '00000000-0000-0000-0000-000000000000'), /not found/);
});

async function fanInRace(t: Test, oneTransaction: boolean) {
  const s = await seedJob(db.pool, { variants: 50, variantStep: 'readability_eval', variantStatus: 'done' });
  if (oneTransaction) {
    await db.pool.query(`UPDATE jobs_variants SET current_step = 'iou_eval', status = 'done' WHERE job_id = $1`, [
      s.jobId,
    ]);
  } else {
    // 50 concurrent transactions, each finishing one variant, committed as close together as possible.
    const wide = new pg.Pool({ connectionString: db.url, max: 55 });
    // end() resolves before the sockets close; the database's DROP ... WITH (FORCE) must not crash the process.
    wide.on('error', () => {});
    const clients = await Promise.all(s.variantIds.map(() => wide.connect()));
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          await c.query('BEGIN');
          await c.query(
            `UPDATE jobs_variants SET current_step = 'iou_eval', status = 'done' WHERE job_variants_id = $1`,
            [s.variantIds[i]],
          );
        }),
      );
      await Promise.all(clients.map((c) => c.query('COMMIT')));
    } finally {
      for (const c of clients) c.release();
      await wide.end();
    }
  }
  // Every finisher (and every instance that saw one) tries the fan-in at once.
  const results = await Promise.all(
    s.variantIds.map(() => claimFanIn(db.pool, { jobId: s.jobId, policy: 'all', trigger: 'fan_in', instanceId: I })),
  );
  t.equal(results.filter((r) => r !== null).length, 1, 'ad_copy_gen_kor claimed once');
  t.match(await jobState(db.pool, s.jobId), { current_step: 'ad_copy_gen_kor', status: 'queued', attempt: 1 });
}

t.test('fan-in: 50 variants done in one transaction -> one claim', async (t) => fanInRace(t, true));

t.test('fan-in: 50 variants done in 50 concurrent transactions -> one claim', async (t) => fanInRace(t, false));

t.test('fan-in: concurrent claimers blocked on the job row lock re-check and match 0 rows', async (t) => {
  const s = await seedJob(db.pool, { variants: 2, variantStep: 'iou_eval', variantStatus: 'done' });
  const a = await db.pool.connect();
  try {
    await a.query('BEGIN');
    const first = await claimFanIn(a, { jobId: s.jobId, policy: 'all', trigger: 'fan_in', instanceId: 'A' });
    t.ok(first, 'A claims inside its open transaction');
    // B runs while A still holds the row lock: it blocks, then re-checks current_step after A commits.
    const second = claimFanIn(db.pool, { jobId: s.jobId, policy: 'all', trigger: 'fan_in', instanceId: 'B' });
    await new Promise((r) => setTimeout(r, 200));
    await a.query('COMMIT');
    t.equal(await second, null, 'B matched 0 rows');
  } finally {
    a.release();
  }
});

t.test('fan-in waits for every variant; policy any counts given-up variants', async (t) => {
  const s = await seedJob(db.pool, { variants: 2, variantStep: 'iou_eval', variantStatus: 'done' });
  await db.pool.query(
    `UPDATE jobs_variants SET current_step = 'ocr_eval', status = 'failed', attempt = 3, given_up_at = now() WHERE job_variants_id = $1`,
    [s.variantIds[1]],
  );
  t.equal(await claimFanIn(db.pool, { jobId: s.jobId, policy: 'all', trigger: 'fan_in', instanceId: I }), null);
  t.ok(await claimFanIn(db.pool, { jobId: s.jobId, policy: 'any', trigger: 'fan_in', instanceId: I }));
});

t.test('job-level claim: ad_copy_gen_kor done -> instagram_feed_gen queued, once', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, jobStep: 'ad_copy_gen_kor', jobStatus: 'done' });
  const r = await Promise.all(
    [1, 2, 3].map(() =>
      claimJobNext(db.pool, { jobId: s.jobId, prev: 'ad_copy_gen_kor', trigger: 'notify', instanceId: I }),
    ),
  );
  t.equal(r.filter(Boolean).length, 1);
  t.match(await jobState(db.pool, s.jobId), { current_step: 'instagram_feed_gen', status: 'queued' });
});

t.test('retry is guarded by the attempt read and the limit; give up fails the job (policy all)', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'planner', variantStatus: 'failed' });
  const id = s.variantIds[0]!;
  await db.pool.query(`UPDATE jobs_variants SET last_error = 'boom' WHERE job_variants_id = $1`, [id]);
  const subject = { jobId: s.jobId, jobVariantsId: id, step: 'planner' as const };
  t.equal(await retryStep(db.pool, { ...subject, attempt: 2, maxAttempts: 2, instanceId: I }), null, 'wrong attempt');
  t.equal(await giveUp(db.pool, { ...subject, attempt: 1, maxAttempts: 2, policy: 'all' }), null, 'not at limit');
  const r1 = await retryStep(db.pool, { ...subject, attempt: 1, maxAttempts: 2, instanceId: I });
  t.match(r1, { attempt: 2, trigger: 'retry' });
  t.equal(await retryStep(db.pool, { ...subject, attempt: 1, maxAttempts: 2, instanceId: I }), null, 'only once');
  const st = await stageStart(db.pool, { step: 'planner', jobId: s.jobId, jobVariantsId: id, attempt: 2 });
  t.ok(st.started);
  t.ok(
    await stageFinishFailed(db.pool, {
      step: 'planner',
      jobId: s.jobId,
      jobVariantsId: id,
      attempt: 2,
      error: 'boom again',
    }),
  );
  t.equal(await retryStep(db.pool, { ...subject, attempt: 2, maxAttempts: 2, instanceId: I }), null, 'at the limit');
  const g = await giveUp(db.pool, { ...subject, attempt: 2, maxAttempts: 2, policy: 'all' });
  t.match(g, { attempts: 2, jobFailureReason: 'planner failed after 2 attempts: boom again' });
  t.match(await jobState(db.pool, s.jobId), {
    status: 'failed',
    failure_reason: 'planner failed after 2 attempts: boom again',
  });

  const rj = await retryJob(db.pool, s.jobId);
  t.same(rj.requeued, [{ jobVariantsId: id, step: 'planner', attempt: 3 }]);
  t.equal(rj.previousFailureReason, 'planner failed after 2 attempts: boom again');
  const js = await jobState(db.pool, s.jobId);
  t.equal(js.failure_reason, null, 'job no longer failed for good');
  t.not(js.status, 'failed');
  const vr = await db.pool.query(
    'SELECT status, attempt, attempt_base, given_up_at, dispatch_requested_at FROM jobs_variants WHERE job_variants_id = $1',
    [id],
  );
  t.match(vr.rows[0], { status: 'queued', attempt: 3, attempt_base: 2, given_up_at: null });
  t.ok(vr.rows[0].dispatch_requested_at, 'dispatch requested for the listener');
});

t.test(
  'rescue: only running rows past their deadline, fenced by attempt; the late finish of the old attempt is refused',
  async (t) => {
    const s = await seedJob(db.pool, { variants: 1, variantStep: 'overlay', variantStatus: 'queued' });
    const id = s.variantIds[0]!;
    const st = await stageStart(db.pool, { step: 'overlay', jobId: s.jobId, jobVariantsId: id, attempt: 1 });
    t.ok(st.started);
    const subject = { jobId: s.jobId, jobVariantsId: id, step: 'overlay' as const };
    t.equal(
      await rescueStep(db.pool, { ...subject, attempt: 1, olderThanMs: 60_000, maxAttempts: 3, instanceId: I }),
      null,
      'not past its deadline yet',
    );
    await db.pool.query(
      `UPDATE jobs_variants SET updated_at = now() - interval '2 minutes' WHERE job_variants_id = $1`,
      [id],
    );
    const r = await rescueStep(db.pool, { ...subject, attempt: 1, olderThanMs: 60_000, maxAttempts: 3, instanceId: I });
    t.match(r, { attempt: 2, trigger: 'rescue' });
    t.notOk(
      await stageFinishDone(db.pool, { step: 'overlay', jobId: s.jobId, jobVariantsId: id, attempt: 1 }),
      'late finish of attempt 1 refused',
    );
    t.match(await variantState(db.pool, id), { status: 'queued', attempt: 2 });
  },
);

t.test('retryJob and cancelJob validate their input', async (t) => {
  const s = await seedJob(db.pool, { variants: 1 });
  await t.rejects(retryJob(db.pool, '00000000-0000-0000-0000-000000000000'), /not found/);
  await t.rejects(
    retryJob(db.pool, s.jobId, { variantId: '00000000-0000-0000-0000-000000000000' }),
    /not found in job/,
  );
  t.same((await retryJob(db.pool, s.jobId)).requeued, [], 'nothing failed: nothing re-queued');
});

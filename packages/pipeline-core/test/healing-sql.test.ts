// The SQL of the healing rules (docs/healing.md) against a real PostgreSQL: who
// claimed what, re-dispatch of a dead claimer's row, the instance registry and
// its database-clock notion of death, the one re-read, and the run log's
// attempt_base.
import t from 'tap';
import pg from 'pg';
import { claimVariant, claimVariants } from '../src/sql/claimVariant.js';
import { finishRuns } from '../src/sql/stepRuns.js';
import {
  deregisterInstance,
  LISTENER_APPLICATION_NAME,
  liveInstances,
  observeInstances,
  registerInstance,
} from '../src/sql/instances.js';
import { readSubject } from '../src/sql/readSubject.js';
import { redispatchStep } from '../src/sql/redispatchStep.js';
import { rescueStep } from '../src/sql/rescueStep.js';
import { stageStart } from '../src/sql/stage.js';
import { seedJob, testDb, variantState } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

async function listener(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url, application_name: LISTENER_APPLICATION_NAME });
  c.on('error', () => {}); // terminated on purpose below
  await c.connect();
  return c;
}

t.test('every claim writes claimed_by and the run row records attempt_base', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'img_gen', variantStatus: 'done' });
  const id = s.variantIds[0]!;
  const c = await claimVariant(db.pool, { jobVariantsId: id, prev: 'img_gen', trigger: 'notify', instanceId: 'a-1' });
  t.match(c, { attempt: 1, attemptBase: 0 });
  const row = await db.pool.query('SELECT claimed_by FROM jobs_variants WHERE job_variants_id = $1', [id]);
  t.equal(row.rows[0].claimed_by, 'a-1');
  const run = await db.pool.query(
    'SELECT attempt, attempt_base, instance_id FROM pipeline_step_runs WHERE job_variants_id = $1',
    [id],
  );
  t.same(run.rows, [{ attempt: 1, attempt_base: 0, instance_id: 'a-1' }]);
});

t.test('re-dispatch: one winner among concurrent takers, attempt and attempt_base both +1, fenced', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'img_gen', variantStatus: 'done' });
  const id = s.variantIds[0]!;
  await claimVariant(db.pool, { jobVariantsId: id, prev: 'img_gen', trigger: 'notify', instanceId: 'dead-1' });
  const subject = { jobId: s.jobId, jobVariantsId: id, step: 'vlm_analyze' as const };
  const results = await Promise.all(
    ['b-1', 'b-2', 'b-3', 'b-4'].map((who) =>
      redispatchStep(db.pool, { ...subject, attempt: 1, claimedBy: 'dead-1', instanceId: who, trigger: 'redispatch' }),
    ),
  );
  const won = results.filter((r) => r !== null);
  t.equal(won.length, 1, 'exactly one taker');
  t.match(won[0], { attempt: 2, attemptBase: 1, trigger: 'redispatch' });
  const now = await readSubject(db.pool, subject);
  t.match(now, { step: 'vlm_analyze', status: 'queued', attempt: 2, attemptBase: 1 });
  t.equal((now?.attempt ?? 0) - (now?.attemptBase ?? 0), 1, 'the re-dispatch does not count against the limit');
  t.equal(
    await redispatchStep(db.pool, {
      ...subject,
      attempt: 1,
      claimedBy: 'dead-1',
      instanceId: 'b-9',
      trigger: 'redispatch',
    }),
    null,
    'a stale view (old attempt, old claimer) changes nothing',
  );
  const late = await stageStart(db.pool, { ...subject, attempt: 1 });
  t.equal(late.started, false, "the dead claimer's late send of attempt 1 is refused by the stage's start guard");
  t.ok((await stageStart(db.pool, { ...subject, attempt: 2 })).started, 'the new attempt starts');
  t.equal(
    await redispatchStep(db.pool, {
      ...subject,
      attempt: 2,
      claimedBy: now?.claimedBy ?? null,
      instanceId: 'x',
      trigger: 'redispatch',
    }),
    null,
    'a running row is the stage’s: never re-dispatched',
  );
});

t.test('a row a manual retry asked to dispatch is claimed once, keeping the attempt retryJob made', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'planner', variantStatus: 'queued' });
  const id = s.variantIds[0]!;
  await db.pool.query(
    'UPDATE jobs_variants SET claimed_by = NULL, dispatch_requested_at = now() WHERE job_variants_id = $1',
    [id],
  );
  const subject = { jobId: s.jobId, jobVariantsId: id, step: 'planner' as const };
  const both = await Promise.all(
    ['me', 'other'].map((who) =>
      redispatchStep(db.pool, { ...subject, attempt: 1, claimedBy: null, instanceId: who, trigger: 'manual' }),
    ),
  );
  t.equal(both.filter((c) => c !== null).length, 1, 'one instance sends it');
  const c = both.find((x) => x !== null);
  t.match(c, { attempt: 1, attemptBase: 0, trigger: 'manual' });
  const v = await db.pool.query(
    'SELECT dispatch_requested_at, claimed_by FROM jobs_variants WHERE job_variants_id = $1',
    [id],
  );
  t.same(v.rows[0], { dispatch_requested_at: null, claimed_by: c?.attempt === 1 ? v.rows[0].claimed_by : 'x' });
  t.ok(['me', 'other'].includes(v.rows[0].claimed_by), 'claimed by the winner');
});

t.test('rescue takes only a running row past its deadline and writes the rescuer', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'overlay', variantStatus: 'queued' });
  const id = s.variantIds[0]!;
  const subject = { jobId: s.jobId, jobVariantsId: id, step: 'overlay' as const };
  t.equal(
    await rescueStep(db.pool, { ...subject, attempt: 1, olderThanMs: 0, maxAttempts: 3, instanceId: 'r' }),
    null,
    'a queued row is never rescued',
  );
  await stageStart(db.pool, { ...subject, attempt: 1 });
  const r = await rescueStep(db.pool, { ...subject, attempt: 1, olderThanMs: 0, maxAttempts: 3, instanceId: 'r' });
  t.match(r, { attempt: 2, attemptBase: 0, trigger: 'rescue' });
  t.match(await variantState(db.pool, id), { status: 'queued', attempt: 2 });
});

t.test(
  'instances: registered with the LISTEN pid; lost when the connection is gone; dead after deadAfterMs',
  async (t) => {
    const a = await listener();
    const b = await listener();
    t.teardown(async () => {
      await a.end().catch(() => {});
      await b.end().catch(() => {});
    });
    const ra = await registerInstance(a, { instanceId: 'inst-a', host: 'h', pid: 1 });
    await registerInstance(b, { instanceId: 'inst-b', host: 'h', pid: 2 });
    const pidA = (await a.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
    t.equal(ra.listenerPid, pidA, 'the pid is the LISTEN connection’s own');
    t.equal(ra.conflict, null);

    let o = await observeInstances(b, 200);
    t.ok(o.pids.includes(pidA), 'peers see the listener connection');
    t.same(o.dead, []);
    t.ok(o.live.includes('inst-a') && o.live.includes('inst-b'));

    // inst-a's connection dies: the first observation stamps lost_at; it is dead only after deadAfterMs.
    await db.pool.query('SELECT pg_terminate_backend($1)', [pidA]);
    await a.end().catch(() => {});
    o = await observeInstances(b, 60_000);
    t.same(o.dead, [], 'just lost is not dead');
    const lost = await db.pool.query(`SELECT lost_at FROM pipeline_instances WHERE instance_id = 'inst-a'`);
    t.ok(lost.rows[0].lost_at, 'lost_at stamped by the peer (database clock)');
    // Age the loss instead of sleeping: deadAfterMs is measured on the database's clock.
    await db.pool.query(
      `UPDATE pipeline_instances SET lost_at = now() - interval '20 seconds' WHERE instance_id = 'inst-a'`,
    );
    o = await observeInstances(b, 10_000);
    t.same(o.dead, ['inst-a'], 'lost for longer than deadAfterMs: dead');
    t.notOk(o.live.includes('inst-a'));
    t.same((await liveInstances(db.pool, 10_000)).sort(), ['inst-b']);

    // It comes back (a reconnect re-registers): alive again.
    const a2 = await listener();
    t.teardown(() => a2.end().catch(() => {}));
    await registerInstance(a2, { instanceId: 'inst-a', host: 'h', pid: 1 });
    o = await observeInstances(b, 10_000);
    t.same(o.dead, []);
    t.ok(o.live.includes('inst-a'));

    // A second process registering under a live instance's id is reported.
    const dup = await listener();
    t.teardown(() => dup.end().catch(() => {}));
    const r = await registerInstance(dup, { instanceId: 'inst-a', host: 'other-host', pid: 99 });
    t.match(r.conflict, { host: 'h', pid: 1 }, 'the id is in use by a live connection of another process');

    await deregisterInstance(db.pool, 'inst-b');
    t.notOk((await liveInstances(db.pool, 10_000)).includes('inst-b'), 'a clean stop removes the registration');
  },
);

t.test('the re-read: where the subject is now, or null when gone', async (t) => {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'yolo_detect', variantStatus: 'failed' });
  t.match(await readSubject(db.pool, { jobId: s.jobId, jobVariantsId: s.variantIds[0]! }), {
    step: 'yolo_detect',
    status: 'failed',
    jobFailed: false,
  });
  t.equal(await readSubject(db.pool, { jobId: s.jobId, jobVariantsId: '00000000-0000-0000-0000-000000000000' }), null);
  t.match(
    await readSubject(db.pool, { jobId: s.jobId, jobVariantsId: null }),
    { step: String, status: String },
    'the job row',
  );
});

t.test('claims and run-log writes commit without waiting for the WAL flush; the stage start still waits', async (t) => {
  // docs/healing.md, "Commits that do not wait for the disk": the setting is local
  // to the claim's own transaction, so it is read here inside an explicit one.
  const s = await seedJob(db.pool, { variants: 2, variantStep: 'img_gen', variantStatus: 'done' });
  const client = await db.pool.connect();
  t.teardown(() => client.release(true));
  // The test cluster runs with synchronous_commit off (docs/testing.md); a durable one has it on.
  await client.query('SET synchronous_commit = on');
  const setting = async () =>
    (await client.query<{ s: string }>('SELECT current_setting($1) AS s', ['synchronous_commit'])).rows[0]?.s;
  t.equal(await setting(), 'on', 'the session setting');
  await client.query('BEGIN');
  const one = await claimVariant(client, {
    jobVariantsId: s.variantIds[0]!,
    prev: 'img_gen',
    trigger: 'notify',
    instanceId: 'a',
  });
  t.ok(one, 'claimed');
  t.equal(await setting(), 'off', 'the claim turned the flush wait off for its transaction');
  await client.query('COMMIT');
  t.equal(await setting(), 'on', 'and only for it');
  await client.query('BEGIN');
  const many = await claimVariants(client, {
    items: [{ jobVariantsId: s.variantIds[1]!, prev: 'img_gen' }],
    trigger: 'notify',
    instanceId: 'a',
  });
  t.equal(many.length, 1);
  t.equal(await setting(), 'off', 'the batched claim too');
  await client.query('ROLLBACK');
  await client.query('BEGIN');
  await finishRuns(client, [{ runId: one!.runId, state: 'succeeded', httpStatus: 200, durationMs: 1 }]);
  t.equal(await setting(), 'off', 'the run-log write too');
  await client.query('COMMIT');
  await client.query('BEGIN');
  const started = await stageStart(client, {
    jobId: s.jobId,
    jobVariantsId: s.variantIds[0]!,
    step: 'vlm_analyze',
    attempt: 1,
  });
  t.ok(started, 'the stage start');
  t.equal(await setting(), 'on', "the stage's start keeps the flush, and with it every earlier WAL record");
  await client.query('ROLLBACK');
  // A claim that finds nothing to claim writes nothing, so nothing waits either way.
  await client.query('BEGIN');
  const none = await claimVariant(client, {
    jobVariantsId: s.variantIds[0]!,
    prev: 'img_gen',
    trigger: 'notify',
    instanceId: 'a',
  });
  t.equal(none, null);
  await client.query('ROLLBACK');
});

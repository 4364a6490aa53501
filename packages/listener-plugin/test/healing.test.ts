// Healing by knowing, not by waiting (docs/healing.md), against a real
// PostgreSQL and the fake stage: service failures use no attempt and open a
// circuit instead of failing jobs; a SIGKILLed instance's queued steps are
// taken over by a live peer within deadAfterMs + one liveness interval; the
// deadline travels in a header. Every instance here runs at the plugin's
// default settings unless a line says otherwise.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { STEP_GRAPH, VARIANT_STEPS } from '@feedlyai/pipeline-core';
import Fastify, { type FastifyInstance } from 'fastify';
import t from 'tap';
import { jobStateListener } from '../src/index.js';
import { type FakeStage, startFakeStage } from './fake-stage.js';
import { isJobDone, markImgGenDone, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

/** A host with the plugin at its defaults (only where to find the database and the stage). */
async function defaultsApp(
  stage: FakeStage,
  instanceId: string,
  logs?: Array<Record<string, unknown>>,
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: logs
      ? {
          level: 'info',
          stream: {
            write: (line: string) => {
              logs.push(JSON.parse(line));
            },
          },
        }
      : false,
  });
  await app.register(jobStateListener, { connectionString: db.url, stageApiUrl: stage.url, instanceId, env: {} });
  await app.ready();
  return app;
}

/** Counted attempts per (subject, step): max(attempt - attempt_base) over the run log. */
async function countedAttempts(jobId: string): Promise<number[]> {
  const r = await db.pool.query<{ n: number }>(
    `SELECT max(attempt - coalesce(attempt_base, 0))::int AS n FROM pipeline_step_runs
      WHERE job_id = $1 GROUP BY coalesce(job_variants_id, job_id), step`,
    [jobId],
  );
  return r.rows.map((x) => x.n);
}

/** 2xx answers per (subject, step) at the stage. */
function okPerPair(stage: FakeStage, jobId: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of stage.requests) {
    if (r.jobId !== jobId || !r.status || r.status >= 300 || r.status < 200) continue;
    const k = `${r.jobVariantsId ?? r.jobId}|${r.step}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

function circuitState(app: FastifyInstance): string {
  const c = app.jobStateListener.status().circuits ?? [];
  return c.map((x) => `${x.route ?? 'url'}:${x.state}`).join(',') || 'none';
}

t.test('401 for a while (token rotation): no attempt used, the circuit opens, everything is done after', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const logs: Array<Record<string, unknown>> = [];
  const app = await defaultsApp(stage, 'rot-1', logs);
  t.teardown(() => app.close());
  stage.script('vlm_analyze', [{ status: 401 }], { repeat: true });
  const s = await seedJob(db.pool, { variants: 3 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => /url:open/.test(circuitState(app)), { timeoutMs: 30_000, message: 'circuit open' });
  const seen = stage.calls('vlm_analyze').length;
  await waitFor(() => stage.calls('vlm_analyze').length >= seen + 2, { timeoutMs: 30_000, message: 'probes' });
  t.ok(
    stage.calls('vlm_analyze').every((r) => r.attempt === 1),
    'every 401 re-sent the same attempt 1',
  );
  const probeGaps = stage.calls('vlm_analyze').slice(seen).length;
  t.ok(probeGaps >= 2, 'while open, single probes go out');
  stage.script('vlm_analyze', []); // the new token is in place
  await waitFor(() => isJobDone(db.pool, s.jobId), { timeoutMs: 60_000, message: 'job done after the 401s stop' });
  t.same([...new Set(await countedAttempts(s.jobId))], [1], 'every step used exactly one counted attempt');
  t.ok(
    [...okPerPair(stage, s.jobId).values()].every((n) => n === 1),
    'one 2xx per (subject, step)',
  );
  t.equal(okPerPair(stage, s.jobId).size, 3 * VARIANT_STEPS.length + 2);
  t.equal(logs.filter((l) => /stage circuit opened/.test(String(l.msg))).length, 1, 'one warn line on opening');
  await waitFor(() => logs.some((l) => l.msg === 'stage circuit closed' && typeof l.swept === 'number'), {
    timeoutMs: 10_000,
    message: 'one info line on closing, with the count swept',
  });
  t.ok((app.jobStateListener.status().serviceFailures ?? 0) >= 3);
  t.equal(
    (await db.pool.query('SELECT failure_reason FROM jobs WHERE job_id = $1', [s.jobId])).rows[0].failure_reason,
    null,
  );
});

t.test('a route answering 404 without job_not_found opens that route’s circuit only', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const app = await defaultsApp(stage, 'route-1');
  t.teardown(() => app.close());
  stage.script('yolo_detect', [{ status: 404 }], { repeat: true });
  const a = await seedJob(db.pool, { variants: 3 });
  await markImgGenDone(db.pool, a.variantIds);
  await waitFor(() => /\/api\/yh\/yolo\/detect:open/.test(circuitState(app)), {
    timeoutMs: 30_000,
    message: 'route circuit open',
  });
  t.match(circuitState(app), /url:closed/, 'the URL circuit stays closed');
  // Other routes of the same stage still work meanwhile.
  const b = await seedJob(db.pool, { variants: 1 });
  await markImgGenDone(db.pool, b.variantIds);
  await waitFor(() => stage.calls('vlm_analyze', b.variantIds[0]).some((r) => r.status === 200), {
    timeoutMs: 30_000,
    message: 'vlm_analyze still served',
  });
  stage.script('yolo_detect', []); // the route is deployed
  await waitFor(async () => (await isJobDone(db.pool, a.jobId)) && (await isJobDone(db.pool, b.jobId)), {
    timeoutMs: 60_000,
    message: 'both jobs done',
  });
  t.same([...new Set([...(await countedAttempts(a.jobId)), ...(await countedAttempts(b.jobId))])], [1]);
});

t.test('connection refused, 503 and a 5xx that recorded nothing: same attempt, no attempt used', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const app = await defaultsApp(stage, 'refused-1');
  t.teardown(() => app.close());
  await stage.down();
  const s = await seedJob(db.pool, { variants: 2 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => /url:open/.test(circuitState(app)), { timeoutMs: 30_000, message: 'circuit open on refused' });
  const v = await db.pool.query(`SELECT status, attempt, claimed_by FROM jobs_variants WHERE job_id = $1`, [s.jobId]);
  t.ok(
    v.rows.every((r) => r.status === 'queued' && r.attempt === 1 && r.claimed_by === 'refused-1'),
    'claimed, waiting, attempt 1',
  );
  const id = s.variantIds[0]!;
  stage.script('yolo_detect', [{ status: 503, retryAfter: '0' }, { status: 500, record: false }, {}], { subject: id });
  await stage.up();
  await waitFor(() => isJobDone(db.pool, s.jobId), {
    timeoutMs: 60_000,
    message: 'job done after the stage came back',
  });
  t.same(
    stage.calls('yolo_detect', id).map((r) => [r.attempt, r.status]),
    [
      [1, 503],
      [1, 500],
      [1, 200],
    ],
    '503 and an unrecorded 500: the same attempt re-sent',
  );
  t.same([...new Set(await countedAttempts(s.jobId))], [1]);
});

t.test('the deadline travels as x-pipeline-timeout-ms (the step’s timeout)', async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  const app = await defaultsApp(stage, 'deadline-1');
  t.teardown(() => app.close());
  const s = await seedJob(db.pool, { variants: 1 });
  await markImgGenDone(db.pool, s.variantIds);
  await waitFor(() => isJobDone(db.pool, s.jobId), { timeoutMs: 60_000 });
  const sent = stage.requests.filter((r) => r.jobId === s.jobId);
  t.ok(sent.length >= 10);
  for (const r of sent) t.equal(r.timeoutHeader, String(STEP_GRAPH[r.step!].timeoutMs), `${r.step}`);
});

t.test(
  'a SIGKILLed instance’s queued steps are taken over by a live peer within deadAfterMs + one liveness interval',
  async (t) => {
    const stage = await startFakeStage(db.pool);
    t.teardown(() => stage.close());
    await stage.down(); // the victim claims, but cannot deliver: its claims stay queued
    const child = fork(fileURLToPath(new URL('./fixtures/instance.mjs', import.meta.url)), [
      JSON.stringify({ connectionString: db.url, stageApiUrl: stage.url, instanceId: 'victim', env: {} }),
    ]);
    t.teardown(() => child.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`instance exited ${code}`)));
    });
    const jobs = [await seedJob(db.pool, { variants: 2 }), await seedJob(db.pool, { variants: 2 })];
    for (const j of jobs) await markImgGenDone(db.pool, j.variantIds);
    const victimRows = async () =>
      (
        await db.pool.query(
          `SELECT count(*)::int AS n FROM jobs_variants WHERE claimed_by = 'victim' AND status = 'queued' AND job_id = ANY($1)`,
          [jobs.map((j) => j.jobId)],
        )
      ).rows[0].n;
    await waitFor(async () => (await victimRows()) === 4, {
      timeoutMs: 30_000,
      message: 'the victim claimed all four',
    });
    child.kill('SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => child.once('exit', r));
    const peer = await defaultsApp(stage, 'survivor');
    t.teardown(() => peer.close());
    await stage.up();
    await waitFor(async () => (await victimRows()) === 0, { timeoutMs: 60_000, message: 're-dispatched' });
    const takeoverMs = Date.now() - killedAt;
    t.comment(JSON.stringify({ takeoverMs, deadAfterMs: 10_000, livenessIntervalMs: 5_000 }));
    t.ok(takeoverMs <= 30_000, `taken over in ${takeoverMs} ms (target: deadAfterMs + one liveness interval = 15 s)`);
    for (const j of jobs) await waitFor(() => isJobDone(db.pool, j.jobId), { timeoutMs: 60_000, message: 'jobs done' });
    const re = await db.pool.query(
      `SELECT attempt, attempt_base, trigger, instance_id FROM pipeline_step_runs
      WHERE job_id = ANY($1) AND step = 'vlm_analyze' ORDER BY run_id`,
      [jobs.map((j) => j.jobId)],
    );
    t.same(
      re.rows.filter((r) => r.trigger === 'redispatch').map((r) => [r.attempt, r.attempt_base, r.instance_id]),
      Array(4).fill([2, 1, 'survivor']),
      'one re-dispatch each: attempt 2, attempt_base 1, by the survivor',
    );
    for (const j of jobs) t.same([...new Set(await countedAttempts(j.jobId))], [1], 'the re-dispatch did not count');
    t.ok(
      stage.calls('vlm_analyze').every((r) => r.attempt === 2),
      'the dead instance’s attempt 1 never reached the stage',
    );
    t.equal(peer.jobStateListener.status().redispatches ?? 0, 4);
  },
);

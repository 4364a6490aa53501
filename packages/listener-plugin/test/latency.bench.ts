// Hand-run measurement (not part of `pnpm test`): the time from just before the
// UPDATE that commits (S,'done') is sent to the fake stage receiving the
// request for S's successor, over N serial samples.
//
//   cd packages/listener-plugin && npx tap --reporter=tap test/latency.bench.ts
//   (SAMPLES=1000 by default; TEST_DATABASE_URL to use another PostgreSQL)
import pg from 'pg';
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, seedJob, testDb, waitFor } from './helpers.js';

const samples = Number(process.env.SAMPLES ?? 1000);
const db = await testDb();
t.teardown(() => db.close());

t.test(`UPDATE (planner,'done') -> overlay request at the stage, ${samples} serial samples`, async (t) => {
  const stage = await startFakeStage(db.pool);
  t.teardown(() => stage.close());
  // The stage answers 409 at once without touching the row, so every sample starts from the same state.
  stage.script('overlay', [{ status: 409 }], { repeat: true });
  const { app } = await buildApp({ connectionString: db.url, stageApiUrl: stage.url, recoveryIntervalMs: 3_600_000 });
  t.teardown(() => app.close());
  await app.ready();
  // Quiet logs: the benchmark measures the engine, not the log sink.
  app.log.level = 'warn';
  await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'planner', variantStatus: 'running' });
  const id = s.variantIds[0]!;
  const writer = new pg.Client({ connectionString: db.url });
  await writer.connect();
  t.teardown(() => writer.end());

  let arrived: ((at: number) => void) | null = null;
  stage.onRequest = (r) => {
    if (r.step === 'overlay') arrived?.(r.at);
  };
  let claimedAt = 0;
  app.jobStateListener.on('step:dispatched', (e) => {
    if (e.step === 'overlay') claimedAt = performance.now();
  });
  const lat: number[] = [];
  const commitAck: number[] = [];
  const claimDone: number[] = [];
  for (let i = 0; i < samples + 20; i++) {
    await writer.query(
      `UPDATE jobs_variants SET current_step = 'planner', status = 'running' WHERE job_variants_id = $1`,
      [id],
    );
    const got = new Promise<number>((r) => {
      arrived = r;
    });
    const t0 = performance.now();
    await writer.query(`UPDATE jobs_variants SET status = 'done' WHERE job_variants_id = $1`, [id]);
    const tAck = performance.now();
    const t1 = await got;
    arrived = null;
    if (i >= 20) {
      // 20 warm-up samples
      lat.push(t1 - t0);
      commitAck.push(tAck - t0);
      claimDone.push(claimedAt - t0);
    }
    // Let the 409 answer be handled before the next sample.
    await waitFor(() => stage.requests.length === i + 1 && app.jobStateListener.status().inFlight === 0, {
      timeoutMs: 10_000,
    });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1)]!;
  const summary = {
    samples: lat.length,
    median_ms: +q(0.5).toFixed(3),
    p90_ms: +q(0.9).toFixed(3),
    p99_ms: +q(0.99).toFixed(3),
    max_ms: +lat[lat.length - 1]!.toFixed(3),
    median_commit_ack_ms: +median(commitAck).toFixed(3),
    median_claimed_ms: +median(claimDone).toFixed(3),
    postgres: (await db.pool.query('SHOW server_version')).rows[0].server_version,
    load_average: (await import('node:os')).loadavg().map((x) => +x.toFixed(1)),
  };
  t.comment(JSON.stringify(summary));
  t.equal(lat.length, samples);
});

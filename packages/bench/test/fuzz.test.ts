/**
 * Fuzz, part of the chaos suite:
 * - 1,000 random and mutated bodies for each stage route of the real stage
 *   server (buildApp on a real database, app.inject): never a 5xx, never a crash
 *   (CI runs 75 per route; CHAOS_FULL=1 the full 1,000);
 * - garbage sent with pg_notify on both channels (invalid JSON, wrong types,
 *   ~7,900-byte payloads, unknown ids, unknown steps): the listener logs, skips,
 *   and a real job still completes afterwards.
 */
import { randomUUID } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import listenerPlugin from '@feedlyai/listener-plugin';
import { AUTOMATIC_STEPS, migrate, routeOf, STEPS } from '@feedlyai/pipeline-core';
import { buildApp } from '@feedlyai/stage-api';
import { STAGE_MIGRATION_SET } from '@feedlyai/stage-api/migrations';
import { createTestDatabase, jobState, markImgGenDone, seedJob, waitFor } from '@feedlyai/test-helpers';
import fc from 'fast-check';
import Fastify from 'fastify';
import t from 'tap';
import { PHOTO_DIR } from '../src/stage.js';
import { startStageDouble } from '../src/stage-double.js';

/** The engine's migration set and the stage server's (docs/migrations.md). */
async function migrateBoth(url: string): Promise<void> {
  await migrate(url);
  await migrate(url, { set: STAGE_MIGRATION_SET });
}

const full = process.env.CHAOS_FULL === '1';
const RUNS_PER_ROUTE = full ? 1000 : 75;

t.test(`stage routes: ${RUNS_PER_ROUTE} random and mutated bodies each, no 5xx, no crash`, async (t) => {
  const db = await createTestDatabase({ migrate: migrateBoth, externalUrl: null });
  t.teardown(() => db.close());
  const storageDir = await mkdtemp(join(tmpdir(), 'feedly-fuzz-'));
  t.teardown(() => rm(storageDir, { recursive: true, force: true }));
  await mkdir(join(storageDir, 'inputs'), { recursive: true });
  await copyFile(join(PHOTO_DIR, 'coffee.png'), join(storageDir, 'inputs', 'coffee.png'));
  const app = await buildApp({ env: {}, pool: db.pool, storageDir, listener: false, logger: false, cpuWorkers: 0 });
  t.teardown(() => app.close());
  await app.ready();
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 2,
    variantStep: 'img_gen',
    variantStatus: 'done',
  });
  const other = await seedJob(db.pool, { tenantId: 'other_tenant', variants: 1 });

  // Mutations of a valid body: each field valid, foreign, missing or of a wrong type.
  const garbage = fc.oneof(
    fc.string(),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.string(), { maxLength: 3 }),
    fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
    fc.string({ minLength: 300, maxLength: 2000 }),
    fc.constant('00000000-0000-0000-0000-000000000000'),
    fc.constant("' OR 1=1 --"),
  );
  const uuidLike = fc.oneof(
    fc.constant(job.jobId),
    fc.constant(other.jobId),
    fc.uuid(),
    fc.constant(job.jobId.toUpperCase()),
    fc.constant(`${job.jobId} `),
    garbage,
  );
  const mutated = fc.record(
    {
      job_id: uuidLike,
      tenant_id: fc.oneof(fc.constant(job.tenantId), fc.constant('other_tenant'), fc.constant(''), garbage),
      job_variants_id: fc.oneof(
        fc.constant(job.variantIds[0] as string),
        fc.constant(job.variantIds[1] as string),
        fc.constant(other.variantIds[0] as string),
        uuidLike,
      ),
      attempt: fc.oneof(
        fc.integer({ min: -5, max: 5 }),
        fc.constant(2 ** 31),
        fc.constant(Number.MAX_SAFE_INTEGER),
        fc.double(),
        garbage,
      ),
      extra: garbage,
    },
    { requiredKeys: [] },
  );
  // A valid body for the route with exactly one field replaced by garbage, or dropped.
  const oneFieldOff = (step: string) => {
    const valid: Record<string, unknown> = { job_id: job.jobId, tenant_id: job.tenantId, attempt: 1 };
    if (!['ad_copy_gen_kor', 'instagram_feed_gen'].includes(step)) valid.job_variants_id = job.variantIds[0];
    return fc
      .tuple(fc.constantFrom(...Object.keys(valid)), fc.option(garbage, { nil: undefined }))
      .map(([key, value]) => {
        const b: Record<string, unknown> = { ...valid };
        if (value === undefined) delete b[key];
        else b[key] = value;
        return JSON.stringify(b);
      });
  };
  const bodyFor = (step: string) =>
    fc.oneof(
      { weight: 2, arbitrary: oneFieldOff(step) },
      { weight: 3, arbitrary: mutated.map((b) => JSON.stringify(b)) },
      { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
      { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
      { weight: 1, arbitrary: fc.string({ minLength: 70_000, maxLength: 80_000 }) },
    );

  const seen: Record<number, number> = {};
  for (const step of AUTOMATIC_STEPS) {
    const url = routeOf(step);
    await fc.assert(
      fc.asyncProperty(bodyFor(step), async (payload) => {
        const res = await app.inject({
          method: 'POST',
          url,
          headers: { 'content-type': 'application/json' },
          payload,
        });
        seen[res.statusCode] = (seen[res.statusCode] ?? 0) + 1;
        if (res.statusCode >= 500) throw new Error(`${url} answered ${res.statusCode}: ${res.body.slice(0, 300)}`);
        return true;
      }),
      { numRuns: RUNS_PER_ROUTE, seed: 20261122 },
    );
  }
  t.comment(`answers: ${JSON.stringify(seen)}`);
  const total = Object.values(seen).reduce((a, b) => a + b, 0);
  t.equal(total, RUNS_PER_ROUTE * AUTOMATIC_STEPS.length, 'every body answered');
  t.notOk(
    Object.keys(seen).some((c) => Number(c) >= 500),
    'no 5xx',
  );
  t.ok((seen[400] ?? 0) > 0, 'invalid bodies answered 400');
  const health = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(health.statusCode, 200, 'the server still answers after the fuzzing');
});

t.test('pg_notify garbage on both channels: logged, skipped, real work still dispatched', async (t) => {
  const db = await createTestDatabase({ migrate: migrateBoth, externalUrl: null });
  t.teardown(() => db.close());
  const double = await startStageDouble({ connectionString: db.url, poolMax: 8 });
  t.teardown(() => double.close());
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const app = Fastify({ logger: { level: 'warn', stream } });
  await app.register(listenerPlugin, {
    connectionString: db.url,
    stageApiUrl: double.url,
    instanceId: 'fuzz',
    recoveryInterval: 3600,
  });
  t.teardown(() => app.close());
  await app.ready();
  await waitFor(() => app.jobStateListener.status().connected, { message: 'listener connected' });

  const notify = (channel: string, payload: string) => db.pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
  const huge = (n: number) => JSON.stringify({ job_variants_id: randomUUID(), pad: 'x'.repeat(n) });
  const fixed: string[] = [
    '',
    'not json',
    '{',
    '[]',
    'null',
    '42',
    '"a string"',
    '{"job_variants_id": 1, "job_id": 2, "current_step": 3, "status": 4}',
    JSON.stringify({ job_variants_id: randomUUID(), job_id: randomUUID(), current_step: 'warp_drive', status: 'done' }),
    JSON.stringify({
      job_variants_id: randomUUID(),
      job_id: randomUUID(),
      current_step: 'vlm_analyze',
      status: 'exploded',
    }),
    JSON.stringify({ job_id: randomUUID(), current_step: 'ad_copy_gen_kor', status: 'done', attempt: 'one' }),
    huge(7_850),
    'x'.repeat(7_900),
  ];
  // Well-formed but unknown ids: every step and status, on both channels.
  const unknown: string[] = [];
  for (const step of STEPS) {
    for (const status of ['queued', 'running', 'done', 'failed']) {
      unknown.push(
        JSON.stringify({
          job_variants_id: randomUUID(),
          job_id: randomUUID(),
          current_step: step,
          status,
          tenant_id: 'nobody',
          attempt: 1,
        }),
      );
    }
  }
  const random = fc.sample(
    fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc
        .record({
          job_variants_id: fc.oneof(fc.uuid(), fc.string()),
          job_id: fc.oneof(fc.uuid(), fc.integer()),
          current_step: fc.oneof(fc.constantFrom(...STEPS), fc.string()),
          status: fc.oneof(fc.constantFrom('queued', 'running', 'done', 'failed'), fc.string()),
          attempt: fc.oneof(fc.integer(), fc.string()),
        })
        .map((v) => JSON.stringify(v)),
    ),
    { numRuns: 300, seed: 5 },
  );
  const payloads = [...fixed, ...unknown, ...random].filter((p) => Buffer.byteLength(p) < 8000);
  for (const channel of ['job_variant_state_changed', 'job_state_changed']) {
    for (const p of payloads) await notify(channel, p);
  }
  const events = payloads.length * 2;
  await waitFor(() => (app.jobStateListener.status().events ?? 0) >= events, {
    timeoutMs: 30_000,
    message: 'every garbage notification received',
  });
  const status = app.jobStateListener.status();
  t.ok((status.invalid ?? 0) >= fixed.length * 2 - 4, `malformed payloads counted as invalid (${status.invalid})`);
  t.ok(
    lines.some((l) => l.includes('malformed notification skipped')),
    'the skips are logged',
  );
  t.equal(status.connected, true, 'the listener is still connected');
  t.equal(double.requests(), 0, 'no garbage reached the stage');

  // Real work after the garbage: one job through the whole chain.
  const job = await seedJob(db.pool, { variants: 3 });
  await markImgGenDone(db.pool, job.variantIds);
  await waitFor(
    async () => {
      const s = await jobState(db.pool, job.jobId);
      return s.current_step === 'instagram_feed_gen' && s.status === 'done';
    },
    { timeoutMs: 60_000, message: 'a real job completes after the garbage' },
  );
  t.equal(double.requests(), 3 * 8 + 2, 'every step of the real job dispatched once');
});

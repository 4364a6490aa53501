/**
 * The request's deadline (docs/stage-api.md, "Deadline") and one request per
 * attempt: the x-pipeline-timeout-ms header stops a hanging model call and
 * fails the step with `deadline exceeded`; a malformed header is ignored
 * (never 400); worker tasks and OCR stop when the signal fires; a second
 * request for an attempt this process is handling gets 409 at once.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { DeadlineExceeded, parseTimeoutHeader } from '../src/stages/deadline.js';
import {
  createOcrEngine,
  decodeImage,
  planPlacements,
  renderCreative,
  treatmentForVariant,
} from '../src/vision/index.js';
import { createCpuRunner } from '../src/workers/pool.js';
import { hang, ok, type Responder, startFakeOpenAi } from './fake-openai.js';
import { FIXTURES, seedJob, tempStorage, testApp, testDb, variantState, waitFor } from './helpers.js';

const VALIDATE = '/api/yh/llava/stage1/validate';
const ANALYSIS = {
  usable: true,
  description: 'A cup of coffee on a saucer.',
  dominant_colors: ['#5a3d2b'],
  problems: [],
};

t.test('parseTimeoutHeader: one plain positive integer of at most an hour, else null', async (t) => {
  t.equal(parseTimeoutHeader('1500'), 1500);
  t.equal(parseTimeoutHeader(' 250 '), 250);
  t.equal(parseTimeoutHeader('3600000'), 3_600_000);
  const bad: Array<string | string[] | undefined> = [
    undefined,
    '',
    '0',
    '-5',
    '1.5',
    '1e3',
    'abc',
    '0x10',
    '3600001',
    '99999999999999999999',
    '1000, 2000',
    ['1000', '2000'],
  ];
  for (const v of bad) t.equal(parseTimeoutHeader(v), null, `ignored: ${JSON.stringify(v)}`);
});

t.test(
  'the deadline header is honoured: a hanging VLM is aborted and the step fails with deadline exceeded',
  async (t) => {
    const db = await testDb(t);
    const storage = await tempStorage(t);
    const fake = await startFakeOpenAi(t, [hang()]);
    // The VLM's own timeout (60 s) and the step's (120 s) are far away: only the header can stop it.
    const app = await testApp(t, db, storage, {
      vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 3, timeoutMs: 60_000 },
    });
    const job = await seedJob(db.pool, {
      imageUrl: 'inputs/coffee.png',
      variants: 1,
      variantStep: 'vlm_analyze',
      variantStatus: 'queued',
    });
    const id = job.variantIds[0] as string;
    const t0 = Date.now();
    const r = await app.inject({
      method: 'POST',
      url: VALIDATE,
      headers: { 'x-pipeline-timeout-ms': '1500' },
      payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id, attempt: 1 },
    });
    const elapsed = Date.now() - t0;
    t.equal(r.statusCode, 500, r.body);
    t.match(r.json(), {
      status: 'failed',
      attempt: 1,
      error: /^vlm_analyze: deadline exceeded: 1500 ms \(x-pipeline-timeout-ms\) passed$/,
    });
    t.ok(elapsed >= 1_400, `not before the deadline (${elapsed} ms)`);
    t.ok(elapsed < 1_500 + 10_000, `soon after it (${elapsed} ms)`);
    t.match(await variantState(db.pool, id), {
      current_step: 'vlm_analyze',
      status: 'failed',
      attempt: 1,
      last_error: /deadline exceeded/,
    });
    await waitFor(() => fake.requests[0]?.aborted, { message: 'the model request was aborted' });
    t.equal(fake.requests.length, 1, 'no retry was sent after the deadline');
  },
);

t.test('a malformed deadline header is ignored: the step runs with its own timeout (never 400)', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const fake = await startFakeOpenAi(t, [ok(ANALYSIS)]);
  const app = await testApp(t, db, storage, { vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 } });
  const values = ['abc', '0', '-5', '1.5', '99999999999', '1000, 2000'];
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: values.length + 1,
    variantStep: 'vlm_analyze',
    variantStatus: 'queued',
  });
  const headers: Array<Record<string, string | string[]>> = [
    ...values.map((v) => ({ 'x-pipeline-timeout-ms': v })),
    { 'x-pipeline-timeout-ms': ['1000', '2000'] },
  ];
  for (const [i, h] of headers.entries()) {
    const id = job.variantIds[i] as string;
    const r = await app.inject({
      method: 'POST',
      url: VALIDATE,
      headers: h,
      payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id, attempt: 1 },
    });
    t.equal(r.statusCode, 200, `${JSON.stringify(h)}: ${r.body.slice(0, 200)}`);
    t.match(await variantState(db.pool, id), { status: 'done' });
  }
});

t.test('the model client: no retry wait that would end past the deadline', async (t) => {
  const { createChatClient } = await import('../src/clients/chat.js');
  const { z } = await import('zod');
  const overloaded: Responder = (_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '30' });
    res.end('{"error":"busy"}');
  };
  const fake = await startFakeOpenAi(t, [overloaded]);
  const client = createChatClient({ name: 'LLM', baseUrl: fake.url, model: 'm', timeoutMs: 5_000, maxRetries: 5 });
  const t0 = Date.now();
  await t.rejects(
    client.completeJson(
      {
        system: 's',
        user: 'u',
        schemaName: 'x',
        jsonSchema: { type: 'object' },
        validate: z.object({ x: z.string() }),
      },
      { deadline: Date.now() + 3_000 },
    ),
    {
      name: 'ModelError',
      message: /HTTP 503.*no retry: the next one would start 30000 ms from now, past the request's deadline/,
    },
  );
  t.ok(Date.now() - t0 < 3_000, 'gave up at once instead of waiting 30 s');
  t.equal(fake.requests.length, 1, 'one request');
});

t.test('a worker task is stopped when the signal fires', async (t) => {
  const cpu = createCpuRunner(1);
  t.teardown(() => cpu.close());
  const bytes = await readFile(path.join(FIXTURES, 'chelsea.png'));
  t.match(await cpu.run('probe', [bytes]), { width: Number }, 'the pool works');
  const ac = new AbortController();
  const reason = new DeadlineExceeded(5, 'header');
  const running = cpu.run('saliency', [bytes], { signal: ac.signal });
  ac.abort(reason);
  await t.rejects(running, reason, 'rejects with the signal reason');
  await t.rejects(cpu.run('probe', [bytes], { signal: ac.signal }), reason, 'not started once the signal fired');
  t.match(await cpu.run('probe', [bytes]), { width: Number }, 'the pool still works');
});

t.test('OCR is stopped when the signal fires, and works again afterwards', async (t) => {
  const png = await readFile(path.join(FIXTURES, 'coffee.png'));
  const img = await decodeImage(png);
  const texts = { headline: 'Slow mornings, better coffee' };
  const plan = planPlacements(img, [], texts);
  const creative = await renderCreative(img, plan.proposals[0]!, texts, treatmentForVariant(1, img));
  const engine = await createOcrEngine();
  t.teardown(() => engine.close());
  const warm = await engine.evaluate(creative.png, creative.layout); // the workers exist now
  t.equal(warm.length, creative.layout.lines.length);
  // A deadline shorter than one recognition: it fires while tesseract works on the line.
  const signal = AbortSignal.timeout(20);
  await t.rejects(engine.evaluate(creative.png, creative.layout, { signal }), { name: 'TimeoutError' });
  const lines = await engine.evaluate(creative.png, creative.layout);
  t.equal(lines.length, creative.layout.lines.length, 'the next call reads every line');
  t.ok(
    lines.every((l) => l.cer < 0.5),
    'and reads them well',
  );
});

t.test('a second request for an attempt this process is handling gets 409 at once', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  let release: () => void = () => {};
  const held = new Promise<void>((r) => {
    release = r;
  });
  const fake = await startFakeOpenAi(t, [
    async (req, res, i) => {
      await held;
      ok(ANALYSIS)(req, res, i);
    },
  ]);
  const app = await testApp(t, db, storage, {
    vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 },
    concurrency: { vlm: 4 },
  });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'vlm_analyze',
    variantStatus: 'queued',
  });
  const id = job.variantIds[0] as string;
  const payload = { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id, attempt: 1 };
  const first = app.inject({ method: 'POST', url: VALIDATE, payload });
  await waitFor(() => fake.requests.length === 1, { message: 'the first request reached the VLM' });
  const t0 = Date.now();
  const second = await app.inject({ method: 'POST', url: VALIDATE, payload });
  t.equal(second.statusCode, 409);
  t.match(second.json(), {
    status: 'conflict',
    error: /this process is already handling vlm_analyze of this variant attempt 1/,
  });
  t.ok(Date.now() - t0 < 5_000, 'answered at once');
  t.equal(fake.requests.length, 1, 'the second did not run beside the first');
  release();
  const r1 = await first;
  t.equal(r1.statusCode, 200, r1.body);
  t.match(await variantState(db.pool, id), { status: 'done', attempt: 1 });
  const rows = await db.pool.query('SELECT count(*)::int AS n FROM stage_vlm_analyses WHERE job_id = $1', [job.jobId]);
  t.equal(rows.rows[0].n, 1, 'one result row');
  const third = await app.inject({ method: 'POST', url: VALIDATE, payload });
  t.equal(third.statusCode, 409, 'once the first is answered, the database answers: already done');
  t.match(third.json().error, /vlm_analyze, done/);
});

/**
 * The state machine under failure and concurrency: bad images fail cleanly,
 * an invalid model answer fails the step, two concurrent calls run once, a
 * late finish of a superseded attempt is discarded, a saturated model
 * answers 429 and leaves the row queued; the model backends mark their rows.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { ok, startFakeOpenAi } from './fake-openai.js';
import { seedJob, tempStorage, testApp, testDb, variantState, waitFor } from './helpers.js';

const VALIDATE = '/api/yh/llava/stage1/validate';
const ANALYSIS = {
  usable: true,
  description: 'A cup of coffee on a saucer.',
  dominant_colors: ['#5a3d2b'],
  problems: [],
};

t.test('zero-byte, corrupt and missing images: failed with a clear error, nothing left running', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  await writeFile(path.join(storage, 'inputs', 'empty.png'), Buffer.alloc(0));
  await writeFile(
    path.join(storage, 'inputs', 'corrupt.png'),
    Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(200, 0x42)]),
  );
  const app = await testApp(t, db, storage);
  const cases: Array<[string, string, RegExp]> = [
    ['zero-byte', 'inputs/empty.png', /empty|zero|0 bytes/i],
    ['corrupt', 'inputs/corrupt.png', /corrupt|unsupported|decode|invalid/i],
    ['missing file', 'inputs/nope.png', /file not found in storage: inputs\/nope\.png/],
    ['path outside the root', '../../etc/passwd', /must not contain '\.\.'/],
  ];
  for (const [name, key, re] of cases) {
    const job = await seedJob(db.pool, { imageUrl: key, variants: 1, variantStep: 'img_gen', variantStatus: 'done' });
    const id = job.variantIds[0] as string;
    for (const url of [VALIDATE, '/api/yh/yolo/detect']) {
      if (url !== VALIDATE) {
        await db.pool.query(
          `UPDATE jobs_variants SET current_step = 'vlm_analyze', status = 'done' WHERE job_variants_id = $1`,
          [id],
        );
      }
      const r = await app.inject({
        method: 'POST',
        url,
        payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id },
      });
      t.equal(r.statusCode, 500, `${name} ${url}: 500`);
      t.match(r.json(), { status: 'failed', error: re }, `${name}: clear error`);
      const s = await variantState(db.pool, id);
      t.equal(s.status, 'failed', `${name}: row failed, not running`);
      t.match(s.last_error, re, `${name}: error stored`);
    }
  }
  const running = await db.pool.query(`SELECT count(*)::int AS n FROM jobs_variants WHERE status = 'running'`);
  t.equal(running.rows[0].n, 0, 'nothing stuck running');
  const metrics = await app.inject({ method: 'GET', url: '/metrics' });
  t.match(metrics.body, /stage_runs_total\{step="vlm_analyze",outcome="failed"\} 4/);
});

t.test('invalid VLM answer: the step fails with a clear error', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const fake = await startFakeOpenAi(t, [ok('I think this photo is nice.')]);
  const app = await testApp(t, db, storage, { vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 } });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'img_gen',
    variantStatus: 'done',
  });
  const id = job.variantIds[0] as string;
  const r = await app.inject({
    method: 'POST',
    url: VALIDATE,
    payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id },
  });
  t.equal(r.statusCode, 500);
  t.match(r.json().error, /vlm_analyze: VLM answer content is not valid JSON: I think this photo is nice/);
  t.match(await variantState(db.pool, id), {
    current_step: 'vlm_analyze',
    status: 'failed',
    last_error: /not valid JSON/,
  });
});

t.test('with a VLM: rows marked vlm with the model', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const fake = await startFakeOpenAi(t, [ok(ANALYSIS, 'llava-v1.6-test')]);
  const app = await testApp(t, db, storage, { vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 } });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'img_gen',
    variantStatus: 'done',
  });
  const r = await app.inject({
    method: 'POST',
    url: VALIDATE,
    payload: { job_id: job.jobId, tenant_id: job.tenantId },
  });
  t.equal(r.statusCode, 200, r.body);
  const row = await db.pool.query(
    'SELECT method, model, usable, description FROM stage_vlm_analyses WHERE job_id = $1',
    [job.jobId],
  );
  t.same(row.rows, [{ method: 'vlm', model: 'llava-v1.6-test', usable: true, description: ANALYSIS.description }]);
});

t.test('two concurrent calls for the same variant and step run once', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage, { concurrency: { render: 8 } });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'img_gen',
    variantStatus: 'done',
  });
  const payload = { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: job.variantIds[0] };
  const answers = await Promise.all([
    app.inject({ method: 'POST', url: VALIDATE, payload }),
    app.inject({ method: 'POST', url: VALIDATE, payload }),
    app.inject({ method: 'POST', url: VALIDATE, payload }),
  ]);
  t.same(answers.map((a) => a.statusCode).sort(), [200, 409, 409], 'one run, the others 409');
  const rows = await db.pool.query('SELECT count(*)::int AS n FROM stage_vlm_analyses WHERE job_id = $1', [job.jobId]);
  t.equal(rows.rows[0].n, 1, 'one result row');
  t.match(await variantState(db.pool, job.variantIds[0] as string), {
    current_step: 'vlm_analyze',
    status: 'done',
    attempt: 1,
  });
});

t.test('a late finish of a superseded attempt changes nothing and its results are discarded', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'vlm_analyze',
    variantStatus: 'queued',
  });
  const id = job.variantIds[0] as string;
  // The slow VLM: while it "thinks", the listener's rescue moves the row to attempt 2.
  const fake = await startFakeOpenAi(t, [
    async (_req, res) => {
      await db.pool.query(
        `UPDATE jobs_variants SET status = 'queued', attempt = attempt + 1 WHERE job_variants_id = $1 AND status = 'running'`,
        [id],
      );
      ok(ANALYSIS)(_req, res, 0);
    },
    ok(ANALYSIS),
  ]);
  const app = await testApp(t, db, storage, { vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 } });
  const payload = { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id, attempt: 1 };
  const r = await app.inject({ method: 'POST', url: VALIDATE, payload });
  t.equal(r.statusCode, 409);
  t.match(r.json(), { status: 'superseded', attempt: 1, error: /superseded.*discarded/ });
  t.match(
    await variantState(db.pool, id),
    { current_step: 'vlm_analyze', status: 'queued', attempt: 2 },
    'the rescue stands',
  );
  let rows = await db.pool.query('SELECT count(*)::int AS n FROM stage_vlm_analyses WHERE job_id = $1', [job.jobId]);
  t.equal(rows.rows[0].n, 0, 'attempt 1 results rolled back');

  const r2 = await app.inject({ method: 'POST', url: VALIDATE, payload: { ...payload, attempt: 2 } });
  t.equal(r2.statusCode, 200, 'attempt 2 runs');
  rows = await db.pool.query('SELECT attempt FROM stage_vlm_analyses WHERE job_id = $1', [job.jobId]);
  t.same(rows.rows, [{ attempt: 2 }]);
  t.match(await variantState(db.pool, id), { status: 'done', attempt: 2 });
  const m = await app.inject({ method: 'GET', url: '/metrics' });
  t.match(m.body, /stage_runs_total\{step="vlm_analyze",outcome="superseded"\} 1/);
});

t.test('saturation without a queue: 429 with Retry-After at once, the row stays queued', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 2,
    variantStep: 'vlm_analyze',
    variantStatus: 'queued',
  });
  const [v1, v2] = job.variantIds as [string, string];
  let release: () => void = () => {};
  const held = new Promise<void>((r) => {
    release = r;
  });
  let entered = false;
  const fake = await startFakeOpenAi(t, [
    async (_req, res) => {
      entered = true;
      await held;
      ok(ANALYSIS)(_req, res, 0);
    },
    ok(ANALYSIS),
  ]);
  const app = await testApp(t, db, storage, {
    vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 },
    concurrency: { vlm: 1 },
    // No waiting room: a call that finds the slot taken is refused at once (docs/stage-api.md, "Admission").
    queue: { vlm: 0 },
  });
  const first = app.inject({
    method: 'POST',
    url: VALIDATE,
    payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: v1, attempt: 1 },
  });
  await waitFor(() => entered, { message: 'first call reached the VLM' });
  const t0 = Date.now();
  const second = await app.inject({
    method: 'POST',
    url: VALIDATE,
    payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: v2, attempt: 1 },
  });
  t.equal(second.statusCode, 429);
  t.ok(Number(second.headers['retry-after']) >= 1, 'Retry-After in whole seconds, at least 1');
  t.match(second.json(), { code: 'busy', reason: 'queue_full', resource: 'vlm' });
  t.match(second.json().error, /the vlm queue is full/);
  t.ok(Date.now() - t0 < 2_000, 'answered at once');
  t.match(
    await variantState(db.pool, v2),
    { current_step: 'vlm_analyze', status: 'queued', attempt: 1 },
    'still queued',
  );
  release();
  t.equal((await first).statusCode, 200);
  const third = await app.inject({
    method: 'POST',
    url: VALIDATE,
    payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: v2, attempt: 1 },
  });
  t.equal(third.statusCode, 200, 'accepted once the slot is free');
  const m = await app.inject({ method: 'GET', url: '/metrics' });
  t.match(m.body, /stage_saturated_total\{step="vlm_analyze",resource="vlm"\} 1/);
  t.match(m.body, /stage_admission_refused_total\{resource="vlm",reason="queue_full"\} 1/);
});

t.test('the English headline: from the inputs, else once per job by the LLM', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const fake = await startFakeOpenAi(t, [ok({ headline: 'Slow Mornings, Perfect Pour' }, 'llm-test')]);
  const app = await testApp(t, db, storage, { llm: { baseUrl: fake.url, model: 'qwen', maxRetries: 0 } });
  const dets = JSON.stringify([{ label: 'cup', classId: 41, score: 0.9, box: { x: 200, y: 120, w: 220, h: 200 } }]);
  async function plannedJob(adCopyEng: string | null) {
    const job = await seedJob(db.pool, {
      imageUrl: 'inputs/coffee.png',
      variants: 2,
      variantStep: 'yolo_detect',
      variantStatus: 'done',
      adCopyEng,
    });
    for (const id of job.variantIds) {
      await db.pool.query(
        `INSERT INTO stage_detections (job_id, job_variants_id, attempt, method, image_width, image_height, detections, detection_count)
         VALUES ($1, $2, 1, 'yolo', 600, 400, $3, 1)`,
        [job.jobId, id, dets],
      );
    }
    const r = await app.inject({
      method: 'POST',
      url: '/api/yh/planner/propose',
      payload: { job_id: job.jobId, tenant_id: job.tenantId },
    });
    t.equal(r.statusCode, 200, r.body.slice(0, 300));
    return job;
  }
  const j1 = await plannedJob(null);
  const c1 = await db.pool.query('SELECT headline_eng, eng_method, eng_model FROM job_ad_copies WHERE job_id = $1', [
    j1.jobId,
  ]);
  t.same(c1.rows, [{ headline_eng: 'Slow Mornings, Perfect Pour', eng_method: 'llm', eng_model: 'llm-test' }]);
  t.equal(fake.requests.length, 1, 'generated once for the two variants');
  t.match(JSON.stringify(fake.requests[0]?.body.messages), /핸드드립/, 'from desc_kor');
  t.equal(fake.requests[0]?.body.response_format.json_schema.name, 'ad_headline');

  const j2 = await plannedJob('Brewed for You');
  const c2 = await db.pool.query('SELECT headline_eng, eng_method FROM job_ad_copies WHERE job_id = $1', [j2.jobId]);
  t.same(c2.rows, [{ headline_eng: 'Brewed for You', eng_method: 'input' }]);
  t.equal(fake.requests.length, 1, 'no LLM call when the inputs carry the copy');
  const props = await db.pool.query<{ lines: Array<{ role: string; text: string }> }>(
    'SELECT lines FROM stage_planner_proposals WHERE job_id = $1',
    [j2.jobId],
  );
  const headlines = new Set(
    props.rows.map((p) =>
      p.lines
        .filter((l) => l.role === 'headline')
        .map((l) => l.text)
        .join(' '),
    ),
  );
  t.same([...headlines], ['Brewed for You'], 'the planner measured the job headline');
});

t.test(
  'ad_copy_gen_kor with an LLM: headline and Korean copy marked llm; an LLM outage fails the job step',
  async (t) => {
    const db = await testDb(t);
    const storage = await tempStorage(t);
    const fake = await startFakeOpenAi(t, [
      ok({ headline: 'Your Slow Coffee Moment' }, 'qwen-test'),
      ok({ ad_copy_kor: '천천히 내린 한 잔의 여유' }, 'qwen-test'),
      (_req, res) => {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end('{"error":"overloaded"}');
      },
    ]);
    const app = await testApp(t, db, storage, { llm: { baseUrl: fake.url, model: 'qwen', maxRetries: 1 } });
    const job = await seedJob(db.pool, {
      imageUrl: 'inputs/coffee.png',
      variants: 2,
      variantStep: 'iou_eval',
      variantStatus: 'done',
    });
    const r = await app.inject({
      method: 'POST',
      url: '/api/yh/gpt/ad-copy-kor',
      payload: { job_id: job.jobId, tenant_id: job.tenantId },
    });
    t.equal(r.statusCode, 200, r.body);
    t.match(r.json(), {
      method: 'llm',
      headline_eng: 'Your Slow Coffee Moment',
      ad_copy_kor: '천천히 내린 한 잔의 여유',
    });
    const row = await db.pool.query(
      'SELECT eng_method, kor_method, kor_model, kor_attempt, ad_copy_kor FROM job_ad_copies WHERE job_id = $1',
      [job.jobId],
    );
    t.same(row.rows, [
      {
        eng_method: 'llm',
        kor_method: 'llm',
        kor_model: 'qwen-test',
        kor_attempt: 1,
        ad_copy_kor: '천천히 내린 한 잔의 여유',
      },
    ]);
    t.match(
      JSON.stringify(fake.requests[1]?.body),
      /Your Slow Coffee Moment/,
      'the Korean copy is made from the English copy',
    );

    const job2 = await seedJob(db.pool, {
      imageUrl: 'inputs/coffee.png',
      variants: 1,
      variantStep: 'iou_eval',
      variantStatus: 'done',
      adCopyEng: 'Given',
    });
    const r2 = await app.inject({
      method: 'POST',
      url: '/api/yh/gpt/ad-copy-kor',
      payload: { job_id: job2.jobId, tenant_id: job2.tenantId },
    });
    t.equal(r2.statusCode, 500);
    t.match(r2.json().error, /ad_copy_gen_kor: LLM answered HTTP 503.*gave up after 2 attempts/);
    const js = await db.pool.query('SELECT current_step, status, last_error FROM jobs WHERE job_id = $1', [job2.jobId]);
    t.match(js.rows[0], { current_step: 'ad_copy_gen_kor', status: 'failed', last_error: /HTTP 503/ });
  },
);

t.test('YOLO_MODEL_PATH that cannot be loaded: the step fails clearly, /healthz says so', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage, { yoloModelPath: path.join(storage, 'missing-yolo11n.onnx') });
  const h = await app.inject({ method: 'GET', url: '/healthz' });
  t.match(h.json().backends.yolo, { mode: 'model', method: 'yolo', model_file_readable: false });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'vlm_analyze',
    variantStatus: 'done',
  });
  const r = await app.inject({
    method: 'POST',
    url: '/api/yh/yolo/detect',
    payload: { job_id: job.jobId, tenant_id: job.tenantId },
  });
  t.equal(r.statusCode, 500);
  t.match(r.json().results[0].error, /yolo_detect: cannot load the YOLO model .*missing-yolo11n\.onnx/);
  t.match(await variantState(db.pool, job.variantIds[0] as string), { current_step: 'yolo_detect', status: 'failed' });
});

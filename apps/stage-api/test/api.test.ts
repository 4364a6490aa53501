/**
 * The HTTP surface without running a stage's work: validation (400), auth
 * (401), ownership (404), readiness (409), body limit (413), /healthz,
 * /metrics and /assets.
 */
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { auth, seedJob, tempStorage, testApp, testDb, variantState } from './helpers.js';

const ROUTE = '/api/yh/llava/stage1/validate';

t.test('stage routes: 400, 401, 404, 409, 413 change nothing', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage, { token: 's3cret-token', bodyLimit: 2048 });
  const job = await seedJob(db.pool, { imageUrl: 'inputs/coffee.png', variants: 2 });
  const [v1] = job.variantIds as [string];
  const headers = auth('s3cret-token');
  const body = { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: v1 };

  // 401
  let r = await app.inject({ method: 'POST', url: ROUTE, payload: body });
  t.equal(r.statusCode, 401, 'no token');
  t.match(r.json(), { error: /token/ });
  r = await app.inject({ method: 'POST', url: ROUTE, payload: body, headers: auth('wrong') });
  t.equal(r.statusCode, 401, 'wrong token');
  r = await app.inject({ method: 'POST', url: ROUTE, payload: body, headers: auth('s3cret-token-longer') });
  t.equal(r.statusCode, 401, 'a longer token with the right prefix');
  r = await app.inject({ method: 'POST', url: ROUTE, payload: body, headers: { authorization: 's3cret-token' } });
  t.equal(r.statusCode, 401, 'not a Bearer header');

  // 400
  r = await app.inject({ method: 'POST', url: ROUTE, payload: { tenant_id: 'x' }, headers });
  t.equal(r.statusCode, 400);
  t.match(r.json().error, /job_id/, 'names the missing field');
  r = await app.inject({ method: 'POST', url: ROUTE, payload: { job_id: 'not-a-uuid', tenant_id: 'x' }, headers });
  t.equal(r.statusCode, 400);
  t.match(r.json().error, /job_id/);
  r = await app.inject({ method: 'POST', url: ROUTE, payload: { ...body, attempt: 0 }, headers });
  t.equal(r.statusCode, 400, 'attempt must be >= 1');
  r = await app.inject({
    method: 'POST',
    url: ROUTE,
    payload: '{"job_id": ',
    headers: { ...headers, 'content-type': 'application/json' },
  });
  t.equal(r.statusCode, 400, 'malformed JSON');
  r = await app.inject({
    method: 'POST',
    url: '/api/yh/gpt/ad-copy-kor',
    payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: v1 },
    headers,
  });
  t.equal(r.statusCode, 400, 'job-level route refuses job_variants_id');

  // 404
  r = await app.inject({ method: 'POST', url: ROUTE, payload: { ...body, tenant_id: 'another_tenant' }, headers });
  t.equal(r.statusCode, 404, 'tenant that does not own the job');
  r = await app.inject({
    method: 'POST',
    url: ROUTE,
    payload: { ...body, job_id: '00000000-0000-4000-8000-000000000000' },
    headers,
  });
  t.equal(r.statusCode, 404, 'unknown job');
  r = await app.inject({
    method: 'POST',
    url: ROUTE,
    payload: { ...body, job_variants_id: '00000000-0000-4000-8000-000000000000' },
    headers,
  });
  t.equal(r.statusCode, 404, 'unknown variant');

  // 409: the variants are still at (img_gen, queued)
  r = await app.inject({ method: 'POST', url: ROUTE, payload: body, headers });
  t.equal(r.statusCode, 409);
  t.match(r.json(), {
    status: 'conflict',
    error: /img_gen, queued/,
    current: { current_step: 'img_gen', status: 'queued' },
  });
  r = await app.inject({
    method: 'POST',
    url: ROUTE,
    payload: { job_id: job.jobId, tenant_id: job.tenantId },
    headers,
  });
  t.equal(r.statusCode, 409, 'no variant of the job is ready');
  t.equal(r.json().variants.length, 2, 'lists every variant state');

  // 413
  r = await app.inject({
    method: 'POST',
    url: ROUTE,
    payload: { ...body, padding: 'x'.repeat(4096) },
    headers,
  });
  t.equal(r.statusCode, 413);
  t.match(r.json(), { error: /larger than 2048/ });

  for (const id of job.variantIds) {
    t.match(await variantState(db.pool, id), { current_step: 'img_gen', status: 'queued', attempt: 1 }, 'unchanged');
  }
  const rows = await db.pool.query('SELECT count(*)::int AS n FROM stage_vlm_analyses');
  t.equal(rows.rows[0].n, 0, 'no result stored');
});

t.test('a step already done or running answers 409 without redoing work', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage);
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'vlm_analyze',
    variantStatus: 'running',
  });
  const body = { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: job.variantIds[0] };
  let r = await app.inject({ method: 'POST', url: ROUTE, payload: body });
  t.equal(r.statusCode, 409, 'running');
  t.match(r.json().error, /vlm_analyze, running/);
  await db.pool.query(`UPDATE jobs_variants SET status = 'done' WHERE job_id = $1`, [job.jobId]);
  r = await app.inject({ method: 'POST', url: ROUTE, payload: body });
  t.equal(r.statusCode, 409, 'done');
  await db.pool.query(`UPDATE jobs_variants SET status = 'queued', attempt = 3 WHERE job_id = $1`, [job.jobId]);
  r = await app.inject({ method: 'POST', url: ROUTE, payload: { ...body, attempt: 2 } });
  t.equal(r.statusCode, 409, 'queued, but for another attempt');
  t.match(await variantState(db.pool, job.variantIds[0] as string), { status: 'queued', attempt: 3 });
});

t.test('/healthz needs no token, reports backends, leaks no secret; /metrics; /assets', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage, {
    token: 'tok-123',
    vlm: { baseUrl: 'http://user:pw@127.0.0.1:9/v1', apiKey: 'sk-very-secret', model: 'llava-test' },
  });
  let r = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(r.statusCode, 200);
  const h = r.json();
  t.match(h, {
    status: 'ok',
    database: { ok: true, migration: Number },
    backends: {
      vlm: { mode: 'model', model: 'llava-test', reachable: false, endpoint: 'http://127.0.0.1:9' },
      llm: { mode: 'fallback', method: 'template' },
      yolo: { mode: 'fallback', method: 'saliency' },
    },
  });
  t.notMatch(r.body, /sk-very-secret|tok-123|pw@/, 'no secret in the health answer');

  r = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(r.statusCode, 200);
  t.match(r.headers['content-type'], /text\/plain/);
  t.match(r.body, /stage_duration_seconds/);
  t.match(r.body, /stage_runs_total/);
  t.match(r.body, /stage_event_loop_delay_p99_seconds/);

  // /assets
  const job = await seedJob(db.pool, { imageUrl: 'inputs/coffee.png', variants: 1 });
  r = await app.inject({ method: 'GET', url: `/assets/${job.imageAssetId}` });
  t.equal(r.statusCode, 401, 'token required');
  r = await app.inject({ method: 'GET', url: `/assets/${job.imageAssetId}`, headers: auth('tok-123') });
  t.equal(r.statusCode, 200);
  t.equal(r.headers['content-type'], 'image/png');
  t.equal(r.rawPayload.subarray(1, 4).toString(), 'PNG');
  r = await app.inject({ method: 'GET', url: '/assets/not-a-uuid', headers: auth('tok-123') });
  t.equal(r.statusCode, 400);
  r = await app.inject({
    method: 'GET',
    url: '/assets/00000000-0000-4000-8000-000000000000',
    headers: auth('tok-123'),
  });
  t.equal(r.statusCode, 404);

  // A row whose key tries to leave the storage root is refused (image extensions: other types are 404 first).
  const outside = path.join(storage, '..', `outside-${path.basename(storage)}.png`);
  await writeFile(outside, 'secret').catch(() => {});
  t.teardown(() => rm(outside, { force: true }));
  for (const evil of [
    '../etc/passwd.png',
    '/etc/passwd.jpg',
    `../${path.basename(storage)}-x/secret.png`,
    'inputs/../../x.png',
  ]) {
    const a = await db.pool.query(
      `INSERT INTO image_assets (image_type, image_url, tenant_id) VALUES ('upload', $1, 't') RETURNING image_asset_id`,
      [evil],
    );
    r = await app.inject({ method: 'GET', url: `/assets/${a.rows[0].image_asset_id}`, headers: auth('tok-123') });
    t.equal(r.statusCode, 403, `refused: ${evil}`);
  }
  // A URL from a host not allow-listed is not fetched.
  const a = await db.pool.query(
    `INSERT INTO image_assets (image_type, image_url, tenant_id) VALUES ('upload', 'http://169.254.169.254/latest/x.png', 't') RETURNING image_asset_id`,
  );
  r = await app.inject({ method: 'GET', url: `/assets/${a.rows[0].image_asset_id}`, headers: auth('tok-123') });
  t.equal(r.statusCode, 502);
  t.match(r.json().error, /IMAGE_FETCH_ALLOWED_HOSTS/);
});

t.test('invalid configuration is a clear error', async (t) => {
  const { buildApp, ConfigError } = await import('../src/app.js');
  await t.rejects(buildApp({ env: {}, listener: false, logger: false }), ConfigError, 'no database');
  await t.rejects(
    buildApp({
      env: { DATABASE_URL: 'postgres://x/y', STAGE_CONCURRENCY_OCR: 'lots' },
      listener: false,
      logger: false,
    }),
    /STAGE_CONCURRENCY_OCR must be an integer from 1 to 256, got "lots"/,
    'the error names the variable, not an internal path',
  );
  await t.rejects(
    buildApp({ env: { DATABASE_URL: 'postgres://x/y', VLM_BASE_URL: 'ftp://x' }, listener: false, logger: false }),
    /VLM_BASE_URL must be an http\(s\) URL, got "ftp:\/\/x"/,
  );
});

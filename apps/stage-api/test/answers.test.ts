/**
 * Answers about the job, before any step starts (docs/stage-api.md,
 * "Answers"): 404 with `"code": "job_not_found"`, 422 input_too_long naming
 * the column, 422 asset_tenant_mismatch, assets without a tenant accepted;
 * and GET /assets: nosniff on every answer, 404 for what is not an image.
 */
import { copyFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { INPUT_CAPS } from '../src/db/queries.js';
import { ok, startFakeOpenAi } from './fake-openai.js';
import { auth, FIXTURES, seedJob, tempStorage, testApp, testDb, variantState } from './helpers.js';

const VALIDATE = '/api/yh/llava/stage1/validate';
const ANALYSIS = {
  usable: true,
  description: 'A cup of coffee on a saucer.',
  dominant_colors: ['#5a3d2b'],
  problems: [],
};

t.test("404 for a job or variant that does not exist or is not the tenant's carries code job_not_found", async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage);
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'vlm_analyze',
    variantStatus: 'queued',
  });
  const body = { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: job.variantIds[0], attempt: 1 };
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    [
      'unknown job',
      { ...body, job_id: '00000000-0000-4000-8000-000000000000' },
      VALIDATE,
      /job 00000000-.* not found for tenant/,
    ],
    ['another tenant', { ...body, tenant_id: 'another_tenant' }, VALIDATE, /not found for tenant another_tenant/],
    [
      'unknown variant',
      { ...body, job_variants_id: '00000000-0000-4000-8000-000000000000' },
      VALIDATE,
      /variant 00000000-.* not found in job/,
    ],
    [
      'job-level step, unknown job',
      { job_id: '00000000-0000-4000-8000-000000000000', tenant_id: 'x', attempt: 1 },
      '/api/yh/gpt/ad-copy-kor',
      /not found for tenant x/,
    ],
  ];
  for (const [name, payload, url, error] of cases) {
    const r = await app.inject({ method: 'POST', url, payload });
    t.equal(r.statusCode, 404, name);
    t.match(r.json(), { code: 'job_not_found', error }, `${name}: code and error text`);
  }
  const unknownRoute = await app.inject({ method: 'POST', url: '/api/yh/nothing-here', payload: body });
  t.equal(unknownRoute.statusCode, 404, 'unknown route');
  t.notOk('code' in unknownRoute.json(), 'an unknown route has no job_not_found code');
  t.match(await variantState(db.pool, job.variantIds[0] as string), { status: 'queued', attempt: 1 }, 'row untouched');
});

t.test(
  '422 input_too_long names the column, before any start; inputs at their cap pass (characters, not bytes)',
  async (t) => {
    const db = await testDb(t);
    const storage = await tempStorage(t);
    const fake = await startFakeOpenAi(t, [ok(ANALYSIS)]);
    const app = await testApp(t, db, storage, { vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 } });
    const over = (field: keyof typeof INPUT_CAPS) => 'x'.repeat(INPUT_CAPS[field] + 1);
    const cases: Array<[keyof typeof INPUT_CAPS, Parameters<typeof seedJob>[1]]> = [
      ['tenant_id', { tenantId: over('tenant_id') }],
      ['product_name', { productName: over('product_name') }],
      ['tagline_kor', { taglineKor: over('tagline_kor') }],
      ['ad_copy_eng', { adCopyEng: over('ad_copy_eng') }],
      ['desc_kor', { descKor: over('desc_kor') }],
    ];
    for (const [field, opts] of cases) {
      const job = await seedJob(db.pool, {
        imageUrl: 'inputs/coffee.png',
        variants: 1,
        variantStep: 'vlm_analyze',
        variantStatus: 'queued',
        ...opts,
      });
      const id = job.variantIds[0] as string;
      const r = await app.inject({
        method: 'POST',
        url: VALIDATE,
        payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id, attempt: 1 },
      });
      t.equal(r.statusCode, 422, `${field}: 422`);
      t.match(
        r.json(),
        {
          code: 'input_too_long',
          field,
          cap: INPUT_CAPS[field],
          length: INPUT_CAPS[field] + 1,
          error: new RegExp(field),
        },
        `${field}: named`,
      );
      const row = await db.pool.query(
        'SELECT current_step, status, attempt, start_token FROM jobs_variants WHERE job_variants_id = $1',
        [id],
      );
      t.same(
        row.rows[0],
        { current_step: 'vlm_analyze', status: 'queued', attempt: 1, start_token: null },
        `${field}: row untouched`,
      );
    }
    t.equal(fake.requests.length, 0, 'no model was called');

    // At the caps in Hangul: 3 bytes a character, still within the caps.
    const job = await seedJob(db.pool, {
      imageUrl: 'inputs/coffee.png',
      variants: 1,
      variantStep: 'vlm_analyze',
      variantStatus: 'queued',
      tenantId: '테'.repeat(INPUT_CAPS.tenant_id),
      productName: '가'.repeat(INPUT_CAPS.product_name),
      taglineKor: '나'.repeat(INPUT_CAPS.tagline_kor),
      adCopyEng: 'y'.repeat(INPUT_CAPS.ad_copy_eng),
      descKor: '다'.repeat(INPUT_CAPS.desc_kor),
    });
    const r = await app.inject({
      method: 'POST',
      url: VALIDATE,
      payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: job.variantIds[0], attempt: 1 },
    });
    t.equal(r.statusCode, 200, `inputs at their caps run: ${r.body.slice(0, 200)}`);
  },
);

t.test(
  "image assets: another tenant's is 422 asset_tenant_mismatch before the start; NULL-tenant assets are used",
  async (t) => {
    const db = await testDb(t);
    const storage = await tempStorage(t);
    const fake = await startFakeOpenAi(t, [ok(ANALYSIS)]);
    const app = await testApp(t, db, storage, { vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 } });
    const newAsset = async (tenant: string | null) =>
      (
        await db.pool.query<{ image_asset_id: string }>(
          `INSERT INTO image_assets (image_type, image_url, tenant_id) VALUES ('product', 'inputs/coffee.png', $1) RETURNING image_asset_id`,
          [tenant],
        )
      ).rows[0]?.image_asset_id as string;
    const post = (job: { jobId: string; tenantId: string; variantIds: string[] }) =>
      app.inject({
        method: 'POST',
        url: VALIDATE,
        payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: job.variantIds[0], attempt: 1 },
      });
    const seed = () =>
      seedJob(db.pool, {
        imageUrl: 'inputs/coffee.png',
        variants: 1,
        variantStep: 'vlm_analyze',
        variantStatus: 'queued',
      });

    // The variant's image belongs to another tenant.
    const j1 = await seed();
    const foreign1 = await newAsset('other_tenant');
    await db.pool.query('UPDATE jobs_variants SET img_asset_id = $2 WHERE job_id = $1', [j1.jobId, foreign1]);
    let r = await post(j1);
    t.equal(r.statusCode, 422);
    t.match(r.json(), {
      code: 'asset_tenant_mismatch',
      field: 'jobs_variants.img_asset_id',
      asset_id: foreign1,
      error: /belongs to another tenant/,
    });
    t.match(await variantState(db.pool, j1.variantIds[0] as string), { status: 'queued', attempt: 1 }, 'row untouched');

    // The job input's image belongs to another tenant.
    const j2 = await seed();
    const foreign2 = await newAsset('other_tenant');
    await db.pool.query('UPDATE job_inputs SET img_asset_id = $2 WHERE job_id = $1', [j2.jobId, foreign2]);
    r = await post(j2);
    t.equal(r.statusCode, 422);
    t.match(r.json(), { code: 'asset_tenant_mismatch', field: 'job_inputs.img_asset_id', asset_id: foreign2 });
    t.match(await variantState(db.pool, j2.variantIds[0] as string), { status: 'queued', attempt: 1 }, 'row untouched');
    t.equal(fake.requests.length, 0, 'no model was called');

    // Assets without a tenant (the existing API server's rows) are used.
    const j3 = await seed();
    const shared = await newAsset(null);
    await db.pool.query('UPDATE jobs_variants SET img_asset_id = $2 WHERE job_id = $1', [j3.jobId, shared]);
    await db.pool.query('UPDATE job_inputs SET img_asset_id = $2 WHERE job_id = $1', [j3.jobId, shared]);
    r = await post(j3);
    t.equal(r.statusCode, 200, r.body.slice(0, 200));
    t.match(await variantState(db.pool, j3.variantIds[0] as string), { status: 'done' });
  },
);

t.test('GET /assets: nosniff on every answer, 404 for anything that is not an image', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage, { token: 'tok' });
  await writeFile(path.join(storage, 'inputs', 'page.html'), '<script>alert(1)</script>');
  await writeFile(
    path.join(storage, 'inputs', 'logo.svg'),
    '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
  );
  await copyFile(path.join(FIXTURES, 'coffee.png'), path.join(storage, 'inputs', 'no-extension'));
  const asset = async (key: string, mime: string | null) =>
    (
      await db.pool.query<{ image_asset_id: string }>(
        `INSERT INTO image_assets (image_type, image_url, tenant_id, mime_type) VALUES ('upload', $1, 't', $2) RETURNING image_asset_id`,
        [key, mime],
      )
    ).rows[0]?.image_asset_id as string;
  const get = (id: string, token = 'tok') =>
    app.inject({ method: 'GET', url: `/assets/${id}`, headers: token ? auth(token) : {} });

  let r = await get(await asset('inputs/coffee.png', 'image/png'));
  t.equal(r.statusCode, 200);
  t.equal(r.headers['content-type'], 'image/png');
  t.equal(r.headers['x-content-type-options'], 'nosniff', 'an image: nosniff');
  r = await get(await asset('inputs/no-extension', 'image/png'));
  t.equal(r.statusCode, 200, 'no extension, image mime_type: served');
  t.equal(r.headers['content-type'], 'image/png');

  const refused: Array<[string, string, string | null]> = [
    ['an HTML file', 'inputs/page.html', null],
    ['an HTML file said to be a PNG', 'inputs/page.html', 'image/png'],
    ['a PNG file with an HTML mime_type', 'inputs/coffee.png', 'text/html'],
    ['SVG (can carry script)', 'inputs/logo.svg', 'image/svg+xml'],
    ['neither mime_type nor extension', 'inputs/no-extension', null],
    ['a URL to a non-image', 'https://cdn.example.com/page.php', null],
  ];
  for (const [name, key, mime] of refused) {
    r = await get(await asset(key, mime));
    t.equal(r.statusCode, 404, `${name}: 404`);
    t.match(r.json(), { error: /not an image/ });
    t.equal(r.headers['x-content-type-options'], 'nosniff', `${name}: nosniff`);
  }
  r = await get('00000000-0000-4000-8000-000000000000');
  t.equal(r.statusCode, 404);
  t.equal(r.headers['x-content-type-options'], 'nosniff', 'unknown asset: nosniff');
  r = await get('00000000-0000-4000-8000-000000000000', '');
  t.equal(r.statusCode, 401);
  t.equal(r.headers['x-content-type-options'], 'nosniff', 'no token: nosniff');
});

/**
 * The jobs page against a real PostgreSQL (docs/dashboard.md, "Jobs page"):
 * keyset pagination visits every job once in (created_at, job_id) order, even
 * when jobs share a created_at; each filter (tenant, status, variant step,
 * job step, time range) selects what its definition says; a bad filter value
 * is a 400 that the page shows; rows show progress, status with its reason
 * (escaped), age and the chosen creative.
 */
import t from 'tap';
import { buildApp, seedJob, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const q = (sql: string, params: unknown[] = []) => db.pool.query(sql, params);

const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url });
t.teardown(() => app.close());

interface ApiJob {
  job_id: string;
  tenant_id: string;
  status: string;
  failure_reason: string | null;
  progress: { step: string; status: string; steps_passed: number };
}

async function api(query: Record<string, string>): Promise<{ jobs: ApiJob[]; next_cursor: string | null }> {
  const res = await app.inject({ url: `/pipeline/api/jobs?${new URLSearchParams(query)}` });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
  return res.json();
}

/** A job created at `at` with variants at the given (step, status), the job row at (jobStep, jobStatus). */
async function job(
  tenant: string,
  at: string,
  variants: Array<[string, string]>,
  o: { jobStep?: string; jobStatus?: string; failure?: string } = {},
): Promise<string> {
  const r = await q(
    `INSERT INTO jobs (tenant_id, current_step, status, created_at, failure_reason) VALUES ($1, $2, $3, $4, $5) RETURNING job_id::text`,
    [tenant, o.jobStep ?? 'img_gen', o.jobStatus ?? 'queued', at, o.failure ?? null],
  );
  const id = r.rows[0].job_id as string;
  for (const [i, [step, status]] of variants.entries()) {
    await q(`INSERT INTO jobs_variants (job_id, creation_order, current_step, status) VALUES ($1, $2, $3, $4)`, [
      id,
      i + 1,
      step,
      status,
    ]);
  }
  return id;
}

t.test('keyset pages visit every job once, newest first, ties broken by job id', async (t) => {
  const tenant = 'paging_tenant';
  const ids: Array<{ id: string; at: string }> = [];
  for (let i = 0; i < 41; i++) {
    // Three jobs per moment: the page boundaries fall inside groups of equal created_at.
    const at = new Date(Date.UTC(2026, 0, 1, 0, 0, i, 123) + 0.456).toISOString().replace('Z', '456Z');
    for (let k = 0; k < 3; k++) ids.push({ id: await job(tenant, at, [['img_gen', 'queued']]), at });
  }
  const expected = ids.sort((a, b) => (a.at === b.at ? (a.id < b.id ? 1 : -1) : a.at < b.at ? 1 : -1)).map((x) => x.id);
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: { jobs: ApiJob[]; next_cursor: string | null } = await api({
      tenant,
      limit: '50',
      ...(cursor ? { cursor } : {}),
    });
    seen.push(...page.jobs.map((j) => j.job_id));
    cursor = page.next_cursor;
    pages++;
  } while (cursor && pages < 10);
  t.equal(pages, 3, '123 jobs in pages of 50');
  t.same(seen, expected, 'every job once, in (created_at, job_id) descending order');

  const html = await app.inject({ url: `/pipeline/?tenant=${tenant}&limit=50` });
  t.equal(html.statusCode, 200);
  const next = /href="([^"]+cursor=[^"]+)" rel="next"/.exec(html.body)?.[1]?.replace(/&amp;/g, '&');
  t.ok(next, 'the page links to the older page');
  const second = await app.inject({ url: next as string });
  t.equal(second.statusCode, 200);
  t.match(second.body, new RegExp(`id="job-${expected[50]}"`), 'the older page starts right after the first');
  t.notMatch(second.body, new RegExp(`id="job-${expected[49]}"`));
  t.match(second.body, /← Newest/, 'and links back to the newest');
});

t.test('filters select by their definitions', async (t) => {
  const tenant = 'filter_tenant';
  const day = (d: number) => `2026-02-0${d}T12:00:00Z`;
  const running = await job(tenant, day(1), [
    ['planner', 'running'],
    ['ocr_eval', 'done'],
  ]);
  const failed = await job(tenant, day(2), [['overlay', 'failed']], {
    jobStatus: 'failed',
    failure: 'overlay failed after 3 attempts',
  });
  const jobPhase = await job(
    tenant,
    day(3),
    [
      ['iou_eval', 'done'],
      ['iou_eval', 'done'],
    ],
    { jobStep: 'ad_copy_gen_kor', jobStatus: 'running' },
  );
  const done = await job(tenant, day(4), [['iou_eval', 'done']], { jobStep: 'instagram_feed_gen', jobStatus: 'done' });
  const retrying = await job(tenant, day(5), [['iou_eval', 'done']], {
    jobStep: 'instagram_feed_gen',
    jobStatus: 'failed',
  });
  await job('other_tenant', day(1), [['planner', 'queued']]);
  // Fan-in policy any: done, with a variant given up at planner behind.
  const doneAny = await job(
    tenant,
    '2026-01-15T00:00:00Z',
    [
      ['iou_eval', 'done'],
      ['planner', 'failed'],
    ],
    { jobStep: 'instagram_feed_gen', jobStatus: 'done' },
  );

  const ids = async (query: Record<string, string>) => (await api({ tenant, ...query })).jobs.map((j) => j.job_id);
  t.same(await ids({}), [retrying, done, jobPhase, failed, running, doneAny], 'the tenant, newest first');
  t.same(await ids({ status: 'running' }), [retrying, jobPhase, running], 'running: neither done nor failed for good');
  t.same(await ids({ status: 'done' }), [done, doneAny]);
  t.same(await ids({ status: 'failed' }), [failed], 'failed: failed for good');
  t.same(await ids({ step: 'planner' }), [running], 'a variant step: any variant there, the job not done');
  t.same(await ids({ step: 'planner', status: 'done' }), [], 'a done job is past every step');
  t.same(await ids({ step: 'ocr_eval' }), [running]);
  t.same(await ids({ step: 'overlay' }), [failed]);
  t.same(await ids({ step: 'iou_eval' }), [retrying, done, jobPhase, doneAny], 'iou_eval, finished variants included');
  t.same(await ids({ step: 'ad_copy_gen_kor' }), [jobPhase], 'a job step: the job row');
  t.same(await ids({ step: 'instagram_feed_gen' }), [retrying, done, doneAny]);
  t.same(await ids({ from: day(2), to: day(4) }), [jobPhase, failed], 'from inclusive, to exclusive');
  t.same(await ids({ step: 'overlay', status: 'failed' }), [failed], 'a variant step and a status');
  t.same(
    await ids({ from: '2026-02-03T21:00', tz: '+09:00' }),
    [retrying, done, jobPhase],
    'a local time and the offset',
  );
  t.same(await ids({ status: 'running', step: 'planner' }), [running], 'filters combine');
  t.same((await api({ tenant: 'other_tenant' })).jobs.length, 1);

  const rows = (await api({ tenant })).jobs;
  t.match(rows.find((j) => j.job_id === running)?.progress, { step: 'planner', status: 'running', steps_passed: 2 });
  t.match(rows.find((j) => j.job_id === jobPhase)?.progress, { step: 'ad_copy_gen_kor', steps_passed: 8 });
  t.equal(rows.find((j) => j.job_id === failed)?.failure_reason, 'overlay failed after 3 attempts');
});

t.test('a bad filter value is a 400, and the page shows it', async (t) => {
  const page = await app.inject({ url: '/pipeline/?status=stuck&tenant=acme' });
  t.equal(page.statusCode, 400);
  t.match(page.headers['content-type'], /text\/html/);
  t.match(
    page.body,
    /role="alert" id="filter-error"><b>Bad filter:<\/b> status: expected one of running, done, failed, got &#39;stuck&#39;/,
  );
  t.match(page.body, /<select name="status" aria-invalid="true">/, 'the bad field is marked');
  t.match(page.body, /name="tenant" value="acme"/, 'the other values are kept');
  t.notMatch(page.body, /id="jobs-list"/, 'no list under a bad filter');

  for (const url of [
    '/pipeline/api/jobs?step=img_make',
    '/pipeline/api/jobs?from=yesterday',
    '/pipeline/api/jobs?limit=500',
    '/pipeline/api/jobs?cursor=abc',
    '/pipeline/fragments/jobs?to=2026-13-01',
  ]) {
    const res = await app.inject({ url, headers: { accept: 'application/json' } });
    t.equal(res.statusCode, 400, url);
    t.match(res.json(), { error: /^(step|from|limit|cursor|to): / }, `${url}: the error names the parameter`);
  }
  const xss = await app.inject({ url: `/pipeline/?step=${encodeURIComponent('<script>alert(1)</script>')}` });
  t.equal(xss.statusCode, 400);
  t.notMatch(xss.body, /<script>alert/, 'the bad value is escaped on the page');
  t.match(xss.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
});

t.test('rows: Korean text, escaped reasons, progress bar, age, the chosen creative or the input photo', async (t) => {
  const tenant = '한국_테넌트';
  const withCreative = await seedJob(db.pool, {
    tenantId: tenant,
    variants: 2,
    variantStep: 'iou_eval',
    variantStatus: 'done',
    imageUrl: 'uploads/in.png',
    productName: '핸드드립 <커피>',
  });
  const asset = await q(
    `INSERT INTO image_assets (image_type, image_url, tenant_id) VALUES ('overlay', 'overlay/x.png', $1) RETURNING image_asset_id::text AS id`,
    [tenant],
  );
  const creative = asset.rows[0].id as string;
  await q(
    `INSERT INTO stage_overlays (job_id, job_variants_id, attempt, method, headline, texts, treatment, layout, image_key, image_asset_id, width, height)
     VALUES ($1, $2, 1, 'canvas', '오늘의 커피', '{}', '{}', '{"lines":[]}', 'overlay/x.png', $3, 600, 400)`,
    [withCreative.jobId, withCreative.variantIds[1], creative],
  );
  await q(
    `INSERT INTO stage_instagram_feeds (job_id, attempt, method, chosen_variant_id, scores, caption, hashtags, feed_image_key)
     VALUES ($1, 1, 'template', $2, '[]', '커피', '[]', 'feed/x.png')`,
    [withCreative.jobId, withCreative.variantIds[1]],
  );
  await q(`UPDATE jobs SET current_step = 'instagram_feed_gen', status = 'done' WHERE job_id = $1`, [
    withCreative.jobId,
  ]);
  const failing = await seedJob(db.pool, { tenantId: tenant, variants: 1, imageUrl: 'uploads/in2.png' });
  await q(`UPDATE jobs SET status = 'failed', failure_reason = $2 WHERE job_id = $1`, [
    failing.jobId,
    'planner failed: <img src=x onerror=alert(1)> 텍스트',
  ]);

  const res = await app.inject({ url: `/pipeline/?tenant=${encodeURIComponent(tenant)}` });
  t.equal(res.statusCode, 200);
  t.match(res.body, /<div class="tenant" title="tenant">한국_테넌트<\/div>/, 'Korean text as is');
  t.match(
    res.body,
    new RegExp(`<a class="product" href="/pipeline/jobs/${withCreative.jobId}" lang="ko">핸드드립 &lt;커피&gt;</a>`),
    'the product name, escaped, links to the job',
  );
  t.match(
    res.body,
    new RegExp(`<a href="/pipeline/jobs/${failing.jobId}"><code>${failing.jobId.slice(0, 8)}</code></a>`),
    'without a product name, the short id alone',
  );
  const api = await app.inject({ url: `/pipeline/api/jobs?tenant=${encodeURIComponent(tenant)}` });
  const apiJobs = api.json().jobs as Array<{ job_id: string; product_name: string | null }>;
  t.equal(apiJobs.find((j) => j.job_id === withCreative.jobId)?.product_name, '핸드드립 <커피>', 'in the JSON too');
  t.equal(apiJobs.find((j) => j.job_id === failing.jobId)?.product_name, null);
  t.match(res.body, new RegExp(`src="/pipeline/images/${creative}/thumb"`), 'the chosen creative as a thumbnail');
  t.match(
    res.body,
    new RegExp(`src="/pipeline/images/${failing.imageAssetId}/thumb"[^>]*><span class="tag">input</span>`),
    'else the input photo, marked',
  );
  t.notMatch(res.body, /<img src=x onerror/, 'a failure reason is escaped');
  t.match(res.body, /planner failed: &lt;img src=x onerror=alert\(1\)&gt; 텍스트/);
  t.match(res.body, /aria-label="10 of 10 steps passed"/, 'a done job passed every step');
  t.match(res.body, /<time datetime="[^"]+" title="created [^"]+ UTC">(just now|\d+ s)<\/time>/, 'the age');
  t.match(res.body, /<span>times in UTC, 24-hour<\/span>/, 'the page says which time zone');
  t.match(res.body, /Created from \(UTC\) <input/, 'the filter fields too');
  t.notMatch(res.body, /name="tz"/, 'no browser offset: the fields are read in UTC');

  const row = await app.inject({ url: `/pipeline/jobs/${failing.jobId}/row` });
  t.equal(row.statusCode, 200);
  t.match(
    row.body,
    new RegExp(`^\\s*<tr id="job-${failing.jobId}" class="job st-failed">`),
    'one row, for the live updates',
  );
  t.equal((await app.inject({ url: '/pipeline/jobs/00000000-0000-4000-8000-000000000000/row' })).statusCode, 404);
  t.equal(
    (await app.inject({ url: '/pipeline/jobs/nope/row', headers: { accept: 'application/json' } })).statusCode,
    400,
  );
});

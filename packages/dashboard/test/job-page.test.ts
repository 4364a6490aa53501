/**
 * The job page (docs/dashboard.md, "Job page") for a job whose rows are
 * written the way the engine and the stage server write them: the input
 * photo; every variant's creative side by side, the chosen one marked, its
 * score broken down and why it won; OCR read against the intended text,
 * contrast, overlap and the planner's proposals; the Korean ad copy, caption
 * and hashtags; the timeline of every step and attempt from the run log. Also
 * its live fragment, its JSON, the actions shown for each status, and the help.
 */
import t from 'tap';
import { buildApp, seedJob, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const q = (sql: string, params: unknown[] = []) => db.pool.query(sql, params);
const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url });
t.teardown(() => app.close());

async function asset(key: string): Promise<string> {
  const r = await q(
    `INSERT INTO image_assets (image_type, image_url, tenant_id) VALUES ('overlay', $1, 'cafe_tenant') RETURNING image_asset_id::text AS id`,
    [key],
  );
  return r.rows[0].id;
}

const job = await seedJob(db.pool, {
  tenantId: 'cafe_tenant',
  variants: 3,
  variantStep: 'iou_eval',
  variantStatus: 'done',
  imageUrl: 'uploads/coffee.png',
  productName: '핸드드립 커피',
  descKor: '부드러운 산미와 고소한 향이 어우러진 핸드드립 커피',
});
const [v1, v2, v3] = job.variantIds as [string, string, string];
await q(
  `UPDATE jobs SET current_step = 'instagram_feed_gen', status = 'done', completed_at = created_at + interval '42 seconds' WHERE job_id = $1`,
  [job.jobId],
);
const creatives: Record<string, string> = {};
for (const [i, v] of [v1, v2, v3].entries()) {
  creatives[v] = await asset(`overlay/v${i + 1}.png`);
  await q(
    `INSERT INTO stage_overlays (job_id, job_variants_id, attempt, method, headline, tagline, texts, treatment, layout, proposal_rank, image_key, image_asset_id, width, height)
     VALUES ($1, $2, 1, 'canvas', 'Slow mornings', '오늘의 한 잔', '{}', '{}', '{"lines":[]}', 0, $3, $4, 600, 400)`,
    [job.jobId, v, `overlay/v${i + 1}.png`, creatives[v]],
  );
  await q(
    `INSERT INTO stage_ocr_evals (job_id, job_variants_id, attempt, method, role, lang, expected, read, cer, confidence)
     VALUES ($1, $2, 1, 'tesseract', 'headline', 'eng', 'Slow mornings', $3, $4, 88),
            ($1, $2, 1, 'tesseract', 'tagline', 'kor', '오늘의 한 잔', '오늘의 한잔', 0.17, 71)`,
    [job.jobId, v, i === 2 ? 'Sl0w morn1ngs' : 'Slow mornings', i === 2 ? 0.23 : 0],
  );
  await q(
    `INSERT INTO stage_readability_evals (job_id, job_variants_id, attempt, method, lines, min_contrast, max_clutter, thresholds, pass)
     VALUES ($1, $2, 1, 'measured', '[]', $3, 0.12, '{}', $4)`,
    [job.jobId, v, i === 1 ? 3.9 : 6.2, i !== 1],
  );
  await q(
    `INSERT INTO stage_iou_evals (job_id, job_variants_id, attempt, method, pairs, max_iou, max_io_text)
     VALUES ($1, $2, 1, 'measured', '[]', $3, $4)`,
    [job.jobId, v, i === 1 ? 0.08 : 0, i === 1 ? 0.03 : 0],
  );
  await q(
    `INSERT INTO stage_vlm_judgements (job_id, job_variants_id, attempt, method, score, problems, rationale)
     VALUES ($1, $2, 1, 'heuristic', $3, $4, 'clean layout')`,
    [job.jobId, v, [8, 9, 7][i], i === 1 ? '["text touches the cup"]' : '[]'],
  );
  // One run's proposals share created_at (one transaction at the stage): one statement here. Ranks
  // start at 0, as the stage writes them. The third variant has 12, its chosen one ranked 9th.
  if (i < 2) {
    await q(
      `INSERT INTO stage_planner_proposals (job_id, job_variants_id, attempt, method, rank, region, score, components, rejected_reason, chosen)
       VALUES ($1, $2, 1, 'saliency', 0, '{"x":10,"y":20,"w":300,"h":80}', 1, '{}', NULL, true),
              ($1, $2, 1, 'saliency', 1, '{"x":10,"y":300,"w":300,"h":80}', 0.5, '{}', 'covers the product', false)`,
      [job.jobId, v],
    );
  } else {
    await q(
      `INSERT INTO stage_planner_proposals (job_id, job_variants_id, attempt, method, rank, region, score, components, rejected_reason, chosen)
       SELECT $1, $2, 1, 'saliency', g, '{"x":10,"y":20,"w":300,"h":80}', 1 - g / 100.0, '{}', NULL, g = 8
         FROM generate_series(0, 11) g`,
      [job.jobId, v],
    );
  }
}
const scores = [
  {
    job_variants_id: v1,
    creation_order: 1,
    score: 80.5,
    components: { judge: 0.8, ocr: 0.9, meanCer: 0, readability: 0.6, overlap: 1, maxTextOverObject: 0, capped: 0 },
  },
  {
    job_variants_id: v3,
    creation_order: 3,
    score: 72.5,
    components: { judge: 0.7, ocr: 0.8, meanCer: 0.2, readability: 0.5, overlap: 1, maxTextOverObject: 0, capped: 0 },
  },
  {
    job_variants_id: v2,
    creation_order: 2,
    score: 50,
    components: {
      judge: 0.9,
      ocr: 0.95,
      meanCer: 0,
      readability: 0.7,
      overlap: 0.4,
      maxTextOverObject: 0.03,
      capped: 1,
    },
  },
];
const feedAsset = await asset('feed/f.png');
await q(
  `INSERT INTO job_ad_copies (job_id, headline_eng, eng_method, tagline_kor, ad_copy_kor, kor_method)
   VALUES ($1, 'Slow mornings', 'input', '오늘의 한 잔', '천천히 내린 한 잔으로 여는 아침', 'template')`,
  [job.jobId],
);
await q(
  `INSERT INTO stage_instagram_feeds (job_id, attempt, method, chosen_variant_id, scores, caption, hashtags, feed_image_key, feed_asset_id)
   VALUES ($1, 1, 'template', $2, $3, '오늘 아침은 핸드드립 한 잔 ☕', '["#핸드드립","#coffee"]', 'feed/f.png', $4)`,
  [job.jobId, v1, JSON.stringify(scores), feedAsset],
);
const run = (
  variant: string | null,
  step: string,
  attempt: number,
  offsetS: number,
  state: string,
  http: number | null,
  error: string | null,
) =>
  q(
    `INSERT INTO pipeline_step_runs (job_id, job_variants_id, step, attempt, trigger, state, instance_id, claimed_at, sent_at, finished_at, http_status, error)
     SELECT $1, $2, $3, $4, 'notify', $5, 'api-1:4242:ab12', j.created_at + make_interval(secs => $6),
            j.created_at + make_interval(secs => $6 + 0.02), j.created_at + make_interval(secs => $6 + 1.5), $7, $8
       FROM jobs j WHERE j.job_id = $1`,
    [job.jobId, variant, step, attempt, state, offsetS, http, error],
  );
await run(v1, 'vlm_analyze', 1, 1, 'succeeded', 200, null);
await run(v2, 'vlm_analyze', 1, 1, 'failed', 500, 'model server timed out after 120000 ms');
await run(v2, 'vlm_analyze', 2, 6, 'succeeded', 200, null);
await run(null, 'ad_copy_gen_kor', 1, 30, 'succeeded', 200, null);
// A stage's JSON answer as the engine stores it (docs/dashboard.md, "Job page").
const answer = 'stage answered 422: {"error":"image too small: 80×60 <px>, at least 256","code":"input"}';
await run(v3, 'vlm_analyze', 1, 2, 'rejected', 422, answer);

t.test('the job page: photo, creatives side by side, the breakdown, the copy, the timeline', async (t) => {
  const res = await app.inject({ url: `/pipeline/jobs/${job.jobId}` });
  t.equal(res.statusCode, 200);
  const html = res.body;
  t.match(html, /<title>Job [0-9a-f]{8} · FeedlyAI pipeline<\/title>/);
  t.match(html, new RegExp(`<img class="photo" src="/pipeline/images/${job.imageAssetId}"`), 'the input photo');
  t.match(html, /<dd lang="ko">핸드드립 커피<\/dd>/, 'the product, in Korean');
  t.equal((html.match(/<article class="variant/g) ?? []).length, 3, 'three creatives side by side');
  for (const v of [v1, v2, v3]) t.match(html, new RegExp(`src="/pipeline/images/${creatives[v]}"`), 'each creative');
  t.match(html, new RegExp(`<article class="variant chosen" id="variant-${v1}">`), 'the chosen one marked');
  t.equal((html.match(/<span class="badge chosen">Chosen<\/span>/g) ?? []).length, 1, 'one Chosen badge');
  t.match(
    html,
    /<p class="why">Variant #1 scored 80.50, 8.00 points ahead of #3, mostly on Readability \+3.00 and VLM judge \+2.50.<\/p>/,
    'why it won',
  );
  t.match(
    html,
    /<span class="total">80.5<\/span><span class="of">\/ 100<\/span>\s*<span class="rank">rank 1 of 3<\/span>/,
  );
  t.match(
    html,
    /VLM judge <small>25 %<\/small>[\s\S]*?<td class="pts">20.0 <small>\/ 25<\/small>/,
    'which evaluation gave how much',
  );
  t.match(html, /Readability <small>30 %<\/small>[\s\S]*?<td class="pts">18.0 <small>\/ 30<\/small>/);
  t.match(
    html,
    /Capped at 50: its text covers a detected object \(75.3 before the cap\)/,
    "the capped variant's reason",
  );
  t.match(
    html,
    /<td lang="en">Slow mornings<\/td><td lang="en">Sl0w morn1ngs<\/td><td class="num bad">0.23<\/td>/,
    'OCR: read against intended',
  );
  t.match(html, /<td lang="ko">오늘의 한 잔<\/td><td lang="ko">오늘의 한잔<\/td>/, 'Korean OCR lines');
  t.match(html, /<dd class="bad">3.9:1 worst line · fail<\/dd>/, 'contrast');
  t.match(html, /<dd class="bad">IoU 0.08 · text over object 3\u00a0%<\/dd>/, 'overlap');
  t.match(html, /2 planner proposals, chosen #1</, "the planner's proposals, ranked from 1");
  t.match(html, /<td>covers the product<\/td>/);
  t.match(html, /<tr class=" rejected"><td>2<\/td>/, 'the second proposal is #2');
  const many = html.slice(html.indexOf(`id="variant-${v3}"`));
  t.match(many, /12 planner proposals, chosen #9</, 'the chosen rank, from 1');
  const shown = many.slice(0, many.indexOf('<details class="all-proposals">'));
  t.same(
    [...shown.matchAll(/<tr class="[^"]*"><td>(\d+)<\/td>/g)].map((m) => Number(m[1])),
    [1, 2, 3, 4, 5, 9],
    'collapsed: the best five and the chosen one',
  );
  t.match(many, /<details class="all-proposals"><summary>show all 12<\/summary>/, 'all of them on demand');
  const all = many.slice(many.indexOf('<details class="all-proposals">'), many.indexOf('</details>'));
  t.equal((all.match(/<tr class="/g) ?? []).length, 12, 'every proposal in the full table');
  t.match(
    html,
    /<blockquote lang="ko" class="kor">천천히 내린 한 잔으로 여는 아침<\/blockquote>/,
    'the Korean ad copy',
  );
  t.match(html, /<p lang="ko" class="caption">오늘 아침은 핸드드립 한 잔 ☕<\/p>/, 'the caption');
  t.match(html, /<span>#핸드드립<\/span> <span>#coffee<\/span>/, 'the hashtags');
  t.match(html, new RegExp(`src="/pipeline/images/${feedAsset}/thumb"`), 'the feed image');

  const timeline = html.slice(html.indexOf('<table class="timeline">'));
  t.equal((timeline.match(/<tr class="run /g) ?? []).length, 5, 'every run of the run log');
  t.match(
    timeline,
    /<tr class="run r-failed">\s*<td class="mono step">vlm_analyze<\/td>\s*<td class="which">#2<\/td>\s*<td class="num attempt" data-label="attempt">1 <small class="muted">notify<\/small><\/td>/,
  );
  t.match(timeline, /<td class="num http" data-label="HTTP">500<\/td>/, 'the HTTP status');
  t.match(timeline, /<td class="err">model server timed out after 120000 ms<\/td>/, 'a plain error as it is');
  t.match(
    timeline,
    /<td class="err"><details><summary>stage answered 422: image too small: 80×60 &lt;px&gt;, at least 256<\/summary><code>stage answered 422: \{&quot;error&quot;:&quot;image too small: 80×60 &lt;px&gt;, at least 256&quot;,&quot;code&quot;:&quot;input&quot;\}<\/code><\/details><\/td>/,
    "a stage's JSON answer: its error field, the whole answer on demand",
  );
  t.match(timeline, /title="api-1:4242:ab12">api-1:4242:ab12<\/td>/, 'which instance did it');
  t.match(timeline, /<td class="which">job<\/td>/, 'job-level steps too');
  t.match(timeline, /<td class="num took" data-label="took">1.5 s<\/td>/, 'how long it took');
  t.match(timeline, /class="tbar" style="margin-left: \d+(\.\d+)?%; width: \d+(\.\d+)?%"/, 'a bar on the time axis');
  // Times: UTC, 24-hour, each with its ISO value (docs/dashboard.md, "Times").
  const created = (await q('SELECT created_at FROM jobs WHERE job_id = $1', [job.jobId])).rows[0].created_at as Date;
  const finished = new Date(created.getTime() + 31_500);
  t.match(
    timeline,
    new RegExp(`<time datetime="${finished.toISOString()}">${finished.toISOString().slice(11, 19)}</time>`),
    'a run finished, in UTC with its ISO time',
  );
  t.match(
    html,
    new RegExp(
      `<time datetime="${created.toISOString()}">${created.toISOString().slice(0, 10)} ${created.toISOString().slice(11, 19)} UTC</time>`,
    ),
    'created, in UTC',
  );
  t.match(html, /<span>times in UTC, 24-hour<\/span>/, 'the page says which time zone');
  t.notMatch(html, /<form method="post" action="[^"]+\/(retry|cancel)"/, 'a done job has no action');
});

t.test('its live fragment and its JSON', async (t) => {
  const frag = await app.inject({ url: `/pipeline/jobs/${job.jobId}/live` });
  t.equal(frag.statusCode, 200);
  t.notMatch(frag.body, /<html/, 'a fragment, no layout');
  t.match(frag.body, /<section class="card job-head">/);
  const json = await app.inject({ url: `/pipeline/jobs/${job.jobId}`, headers: { accept: 'application/json' } });
  t.match(json.json(), {
    status: 'done',
    job: { id: job.jobId, feed: { chosenVariantId: v1 } },
    breakdown: { chosenVariantId: v1, variants: [{ order: 1, rank: 1 }, { order: 3 }, { order: 2, capped: true }] },
    timeline: { entries: [{ step: 'vlm_analyze' }, {}, {}, {}, { step: 'ad_copy_gen_kor', variantOrder: null }] },
  });
  t.equal((await app.inject({ url: '/pipeline/jobs/00000000-0000-4000-8000-000000000000' })).statusCode, 404);
  t.equal((await app.inject({ url: '/pipeline/jobs/abc' })).statusCode, 400);
});

t.test('actions shown for the status: Retry when failed, Cancel when running', async (t) => {
  const running = await seedJob(db.pool, { variants: 1 });
  const page = await app.inject({ url: `/pipeline/jobs/${running.jobId}` });
  t.match(page.body, new RegExp(`hx-post="/pipeline/jobs/${running.jobId}/cancel"`), 'Cancel for a running job');
  t.notMatch(page.body, /\/retry"/);
  t.match(
    page.body,
    /<p class="muted">Not scored: not scored yet.<\/p>|No variant is chosen until/,
    'no scores yet, said so',
  );
  await q(`UPDATE jobs SET status = 'failed', failure_reason = 'overlay failed after 3 attempts' WHERE job_id = $1`, [
    running.jobId,
  ]);
  const failed = await app.inject({ url: `/pipeline/jobs/${running.jobId}` });
  t.match(failed.body, new RegExp(`hx-post="/pipeline/jobs/${running.jobId}/retry"`), 'Retry for a failed job');
  t.match(failed.body, /<div class="alert error"><b>Failed:<\/b> overlay failed after 3 attempts<\/div>/);
  t.match(failed.body, /<input type="hidden" name="_csrf" value="[^"]+">/, 'the form carries the CSRF token');
});

t.test('the help page defines status, job step, variant step and progress', async (t) => {
  const res = await app.inject({ url: '/pipeline/help' });
  t.equal(res.statusCode, 200);
  t.match(res.body, /A job that is not done is at <b>variant step<\/b> S when any of its variants is at S/);
  t.match(res.body, /it is at <b>job step<\/b> S when <code>jobs.current_step<\/code> is S/);
  t.match(res.body, /The least advanced variant's step/);
  t.match(res.body, /<b>failed<\/b>: failed for good/);
  t.equal((res.body.match(/<td class="mono">[a-z_]+<\/td>/g) ?? []).length, 10, 'the ten steps');
});

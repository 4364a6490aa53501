/**
 * Every stage through app.inject() on a seeded job with a real photo, on the
 * CPU fallbacks (no VLM, LLM or YOLO configured): each call moves the
 * variants (then the job) running -> done, stores its rows with the method,
 * and the images it writes exist and open.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import t from 'tap';
import { chatAnswer, startFakeOpenAi } from './fake-openai.js';
import { jobState, seedJob, tempStorage, testApp, testDb, variantState } from './helpers.js';

const VARIANT_ROUTES: Array<[string, string]> = [
  ['vlm_analyze', '/api/yh/llava/stage1/validate'],
  ['yolo_detect', '/api/yh/yolo/detect'],
  ['planner', '/api/yh/planner/propose'],
  ['overlay', '/api/yh/overlay/render'],
  ['vlm_judge', '/api/yh/llava/stage2/judge'],
  ['ocr_eval', '/api/yh/evals/ocr'],
  ['readability_eval', '/api/yh/evals/readability'],
  ['iou_eval', '/api/yh/evals/iou'],
];

const OUTPUT = fileURLToPath(new URL('../test-output/stages/', import.meta.url));

t.test('the ten stages on coffee.png, CPU fallbacks, two variants', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage, { cpuWorkers: 1 });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 2,
    variantStep: 'img_gen',
    variantStatus: 'done',
    taglineKor: '오늘의 핸드드립',
  });
  const base = { job_id: job.jobId, tenant_id: job.tenantId };

  for (const [step, url] of VARIANT_ROUTES) {
    // The first variant by id (the dispatcher's way), the rest without (every ready variant).
    const first = await app.inject({ method: 'POST', url, payload: { ...base, job_variants_id: job.variantIds[0] } });
    t.equal(first.statusCode, 200, `${step}: variant 1 answered 200 (${first.body.slice(0, 300)})`);
    t.match(first.json(), { step, status: 'done', attempt: 1, method: String });
    const rest = await app.inject({ method: 'POST', url, payload: base });
    t.equal(rest.statusCode, 200, `${step}: the remaining variant (${rest.body.slice(0, 300)})`);
    t.equal(rest.json().processed, 1, `${step}: only the ready variant was processed`);
    for (const id of job.variantIds) {
      t.match(
        await variantState(db.pool, id),
        { current_step: step, status: 'done', last_error: null },
        `${step} done`,
      );
    }
  }

  const count = async (table: string) =>
    (await db.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE job_id = $1`, [job.jobId])).rows[0].n as number;
  const a = await db.pool.query('SELECT method, usable, dominant_colors FROM stage_vlm_analyses WHERE job_id = $1', [
    job.jobId,
  ]);
  t.equal(a.rows.length, 2);
  t.equal(a.rows[0].method, 'heuristic', 'VLM fallback marked heuristic');
  const d = await db.pool.query('SELECT method, detection_count FROM stage_detections WHERE job_id = $1', [job.jobId]);
  t.equal(d.rows[0].method, 'saliency', 'YOLO fallback marked saliency');
  t.ok(d.rows[0].detection_count >= 1, 'the cup was found');
  const p = await db.pool.query(
    'SELECT job_variants_id, count(*)::int AS n, count(*) FILTER (WHERE chosen)::int AS chosen FROM stage_planner_proposals WHERE job_id = $1 GROUP BY 1',
    [job.jobId],
  );
  t.equal(p.rows.length, 2);
  for (const r of p.rows) {
    t.ok(r.n > 1, 'every proposal stored');
    t.equal(r.chosen, 1, 'exactly one chosen per variant');
  }
  const ov = await db.pool.query(
    `SELECT o.job_variants_id, o.headline, o.tagline, o.method, o.image_key, o.layout, o.treatment, a.image_type, a.image_asset_id
       FROM stage_overlays o JOIN image_assets a ON a.image_asset_id = o.image_asset_id WHERE o.job_id = $1`,
    [job.jobId],
  );
  t.equal(ov.rows.length, 2);
  const headlines = new Set(ov.rows.map((r) => r.headline));
  t.equal(headlines.size, 1, 'both variants share the job headline');
  const copy = await db.pool.query('SELECT headline_eng, eng_method FROM job_ad_copies WHERE job_id = $1', [job.jobId]);
  t.equal(copy.rows[0].eng_method, 'template', 'no input, no LLM: template headline');
  t.equal(ov.rows[0].tagline, '오늘의 핸드드립');
  t.not(
    JSON.stringify(ov.rows[0].layout.lines.map((l: { box: unknown }) => l.box)) + ov.rows[0].treatment.name,
    JSON.stringify(ov.rows[1].layout.lines.map((l: { box: unknown }) => l.box)) + ov.rows[1].treatment.name,
    'variants differ in layout or treatment',
  );
  await mkdir(OUTPUT, { recursive: true });
  for (const r of ov.rows) {
    t.equal(r.image_type, 'overlay');
    const file = path.join(storage, r.image_key);
    const meta = await sharp(file).metadata();
    t.equal(meta.format, 'png', 'overlay PNG opens');
    t.same(
      [meta.width, meta.height],
      [r.layout.width, r.layout.height],
      'the image is the planned canvas (bands included)',
    );
    await copyFile(file, path.join(OUTPUT, `coffee-variant-${r.job_variants_id.slice(0, 8)}.png`));
    const served = await app.inject({ method: 'GET', url: `/assets/${r.image_asset_id}` });
    t.equal(served.statusCode, 200, '/assets serves the overlay');
    t.equal(served.rawPayload.length, (await sharp(file).toBuffer()).length > 0 ? served.rawPayload.length : -1);
  }
  const prev = await db.pool.query(
    `SELECT DISTINCT a.image_asset_id, a.image_url FROM stage_planner_proposals p JOIN image_assets a ON a.image_asset_id = p.preview_asset_id
      WHERE p.job_id = $1 AND a.image_type = 'planner_preview'`,
    [job.jobId],
  );
  t.equal(prev.rows.length, 2, 'one planner preview per variant');
  t.equal((await sharp(path.join(storage, prev.rows[0].image_url)).metadata()).format, 'png');
  t.equal(await count('stage_vlm_judgements'), 2);
  const ocr = await db.pool.query(
    'SELECT role, lang, expected, read, cer, method FROM stage_ocr_evals WHERE job_id = $1',
    [job.jobId],
  );
  t.ok(ocr.rows.length >= 4, 'every rendered line of two variants');
  t.ok(
    ocr.rows.some((r) => r.role === 'headline') && ocr.rows.some((r) => r.role === 'tagline'),
    'headline and tagline lines',
  );
  t.ok(ocr.rows.every((r) => r.method === 'tesseract'));
  t.ok(
    ocr.rows.every((r) => r.cer <= 0.1),
    `every rendered line reads back (${ocr.rows.map((r) => `${r.expected}→${r.read}`).join(', ')})`,
  );
  t.ok(
    ocr.rows.some((r) => r.lang === 'kor'),
    'the Korean line is read with kor',
  );
  t.equal(await count('stage_readability_evals'), 2);
  const iou = await db.pool.query('SELECT max_iou, max_io_text FROM stage_iou_evals WHERE job_id = $1', [job.jobId]);
  t.equal(iou.rows.length, 2);

  // Job level: ad copy (Korean), then the Instagram feed.
  const kor = await app.inject({ method: 'POST', url: '/api/yh/gpt/ad-copy-kor', payload: base });
  t.equal(kor.statusCode, 200, kor.body.slice(0, 300));
  t.match(kor.json(), { step: 'ad_copy_gen_kor', status: 'done', method: 'template', ad_copy_kor: String });
  t.match(await jobState(db.pool, job.jobId), { current_step: 'ad_copy_gen_kor', status: 'done' });
  const again = await app.inject({ method: 'POST', url: '/api/yh/gpt/ad-copy-kor', payload: base });
  t.equal(again.statusCode, 409, 'a done job step is not redone');

  const feed = await app.inject({ method: 'POST', url: '/api/yh/instagram/feed', payload: base });
  t.equal(feed.statusCode, 200, feed.body.slice(0, 300));
  const f = feed.json();
  t.match(f, { step: 'instagram_feed_gen', status: 'done', method: 'template', width: 1080, height: 1350 });
  t.ok(job.variantIds.includes(f.chosen_variant_id), 'a variant of the job was chosen');
  t.equal(f.scores.length, 2, 'both variants scored');
  t.ok(f.caption.length > 0 && f.caption.length <= 2200);
  t.ok(f.hashtags.length > 0 && f.hashtags.length <= 30);
  const js = await jobState(db.pool, job.jobId);
  t.match(js, { current_step: 'instagram_feed_gen', status: 'done' });
  const row = await db.pool.query(
    `SELECT f.feed_image_key, a.image_type FROM stage_instagram_feeds f JOIN image_assets a ON a.image_asset_id = f.feed_asset_id
      WHERE f.job_id = $1`,
    [job.jobId],
  );
  t.equal(row.rows[0].image_type, 'instagram_feed');
  const meta = await sharp(path.join(storage, row.rows[0].feed_image_key)).metadata();
  t.same([meta.width, meta.height], [1080, 1350], 'feed image 1080x1350 opens');
  await copyFile(
    path.join(storage, row.rows[0].feed_image_key),
    path.join(OUTPUT, `coffee-feed${path.extname(row.rows[0].feed_image_key)}`),
  );

  const metrics = await app.inject({ method: 'GET', url: '/metrics' });
  t.match(metrics.body, /stage_runs_total\{step="overlay",outcome="done"\} 2/);
  t.match(metrics.body, /stage_duration_seconds_count\{step="ocr_eval",outcome="done"\} 2/);
});

t.test('with a VLM and an LLM: every model-backed row says vlm / llm', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const answers: Record<string, unknown> = {
    product_photo_analysis: {
      usable: true,
      description: 'An espresso cup on a saucer.',
      dominant_colors: ['#6b3a2a'],
      problems: [],
    },
    creative_judgement: { score: 8.5, problems: [], rationale: 'Legible, clear of the cup.' },
    ad_headline: { headline: 'Pause for Espresso' },
    ad_copy_kor: { ad_copy_kor: '잠시 쉬어가는 에스프레소 한 잔' },
    instagram_post: {
      caption: '오늘은 에스프레소 한 잔의 여유를.\n천천히, 깊게.',
      hashtags: ['에스프레소', '#coffee', '#카페'],
    },
  };
  const fake = await startFakeOpenAi(t, [
    (req, res) => {
      const name = req.body?.response_format?.json_schema?.name as string;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(chatAnswer(answers[name] ?? 'unknown schema', `model-for-${name}`));
    },
  ]);
  const app = await testApp(t, db, storage, {
    vlm: { baseUrl: fake.url, model: 'llava', maxRetries: 0 },
    llm: { baseUrl: fake.url, model: 'qwen', maxRetries: 0 },
  });
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 1,
    variantStep: 'img_gen',
    variantStatus: 'done',
  });
  const base = { job_id: job.jobId, tenant_id: job.tenantId };
  for (const [step, url] of [
    ...VARIANT_ROUTES,
    ['ad_copy_gen_kor', '/api/yh/gpt/ad-copy-kor'],
    ['instagram_feed_gen', '/api/yh/instagram/feed'],
  ]) {
    const r = await app.inject({ method: 'POST', url: url as string, payload: base });
    t.equal(r.statusCode, 200, `${step}: ${r.body.slice(0, 300)}`);
  }
  const one = async (sql: string) => (await db.pool.query(sql, [job.jobId])).rows[0];
  t.match(await one('SELECT method, model FROM stage_vlm_analyses WHERE job_id = $1'), {
    method: 'vlm',
    model: 'model-for-product_photo_analysis',
  });
  t.match(await one('SELECT method, score FROM stage_vlm_judgements WHERE job_id = $1'), { method: 'vlm', score: 8.5 });
  t.match(await one('SELECT headline_eng, eng_method, kor_method FROM job_ad_copies WHERE job_id = $1'), {
    headline_eng: 'Pause for Espresso',
    eng_method: 'llm',
    kor_method: 'llm',
  });
  t.match(await one('SELECT headline FROM stage_overlays WHERE job_id = $1'), { headline: 'Pause for Espresso' });
  const feed = await one('SELECT method, model, caption, hashtags FROM stage_instagram_feeds WHERE job_id = $1');
  t.match(feed, { method: 'llm', model: 'model-for-instagram_post' });
  t.same(feed.hashtags, ['#에스프레소', '#coffee', '#카페'], 'hashtags normalised with #');
  t.match(await one('SELECT current_step, status FROM jobs WHERE job_id = $1'), {
    current_step: 'instagram_feed_gen',
    status: 'done',
  });
  const judgeReq = fake.requests.find((r) => r.body.response_format.json_schema.name === 'creative_judgement');
  t.match(
    judgeReq?.body.messages[1].content[1].image_url.url,
    /^data:image\/jpeg;base64,/,
    'the creative is sent to the VLM',
  );
});

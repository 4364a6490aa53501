/**
 * The view model read from a real PostgreSQL: a job whose rows are written
 * the way the engine and the stage server write them (run log, result
 * tables of two runs, ad copy, feed, stage timings), read back as views.
 */
import path from 'node:path';
import t from 'tap';
import { readJobView, readJobViews, readVariantView } from '../src/index.js';
import { seedJob, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const q = (sql: string, params: unknown[] = []) => db.pool.query(sql, params);

const VARIANT_STEPS = [
  'vlm_analyze',
  'yolo_detect',
  'planner',
  'overlay',
  'vlm_judge',
  'ocr_eval',
  'readability_eval',
  'iou_eval',
];

/** A run-log row, claimed `agoMs` before now, finished `tookMs` later (null: still open). */
async function run(
  jobId: string,
  variantId: string | null,
  step: string,
  attempt: number,
  agoMs: number,
  tookMs: number | null,
) {
  await q(
    `INSERT INTO pipeline_step_runs (job_id, job_variants_id, step, attempt, trigger, state, instance_id, claimed_at, finished_at, http_status, error)
     VALUES ($1, $2, $3, $4, 'notify', $5, 'test-instance', now() - make_interval(secs => $6::float8 / 1000),
             CASE WHEN $7::int IS NULL THEN NULL ELSE now() - make_interval(secs => ($6::float8 - $7::int) / 1000) END,
             CASE WHEN $7::int IS NULL THEN NULL ELSE 200 END, NULL)`,
    [jobId, variantId, step, attempt, tookMs === null ? 'sent' : 'done', agoMs, tookMs],
  );
}

/** Writes a complete set of results for a variant, as one run (one created_at). */
async function results(
  jobId: string,
  v: string,
  o: { judge: number; cer: number[]; iou: number; at: string; overlayKey: string },
) {
  const at = o.at;
  await q(
    `INSERT INTO stage_vlm_analyses (job_id, job_variants_id, attempt, method, model, usable, description, dominant_colors, problems, created_at)
     VALUES ($1, $2, 1, 'heuristic', NULL, true, 'a cup of coffee', '["#332211"]', '[]', $3)`,
    [jobId, v, at],
  );
  await q(
    `INSERT INTO stage_detections (job_id, job_variants_id, attempt, method, model, image_width, image_height, detections, detection_count, created_at)
     VALUES ($1, $2, 1, 'saliency', NULL, 800, 600, '[{"label":"cup","score":0.9,"box":{"x":1,"y":2,"w":3,"h":4}}]', 1, $3)`,
    [jobId, v, at],
  );
  for (const [rank, chosen, rejected] of [
    [2, false, 'covers the product'],
    [1, true, null],
  ] as const) {
    await q(
      `INSERT INTO stage_planner_proposals (job_id, job_variants_id, attempt, method, rank, region, score, components, rejected_reason, chosen, preview_image_key, created_at)
       VALUES ($1, $2, 1, 'saliency', $3, '{"x":10,"y":20,"w":300,"h":80}', $4, '{"coverage":0.1}', $5, $6, $7, $8)`,
      [jobId, v, rank, 1 / rank, rejected, chosen, chosen ? `planner/${v}.png` : null, at],
    );
  }
  await q(
    `INSERT INTO stage_overlays (job_id, job_variants_id, attempt, method, headline, tagline, texts, treatment, layout, proposal_rank, image_key, width, height, created_at)
     VALUES ($1, $2, 1, 'canvas', 'Slow mornings', '오늘의 한 잔', '{}', '{"kind":"shadow"}',
             '{"lines":[{"role":"headline","text":"Slow mornings","box":{"x":10,"y":20,"w":300,"h":40},"fontSize":32,"color":"#fff"}]}',
             1, $3, 800, 600, $4)`,
    [jobId, v, o.overlayKey, at],
  );
  await q(
    `INSERT INTO stage_vlm_judgements (job_id, job_variants_id, attempt, method, model, score, problems, rationale, created_at)
     VALUES ($1, $2, 1, 'heuristic', NULL, $3, '[]', 'fine', $4)`,
    [jobId, v, o.judge, at],
  );
  for (const [i, cer] of o.cer.entries()) {
    await q(
      `INSERT INTO stage_ocr_evals (job_id, job_variants_id, attempt, method, role, lang, expected, read, cer, confidence, created_at)
       VALUES ($1, $2, 1, 'tesseract', $3, 'eng', 'Slow mornings', 'Slow morning', $4, 90, $5)`,
      [jobId, v, i === 0 ? 'headline' : 'tagline', cer, at],
    );
  }
  await q(
    `INSERT INTO stage_readability_evals (job_id, job_variants_id, attempt, method, lines, min_contrast, max_clutter, thresholds, pass, created_at)
     VALUES ($1, $2, 1, 'measured', '[]', 4.5, 0.2, '{}', true, $3)`,
    [jobId, v, at],
  );
  await q(
    `INSERT INTO stage_iou_evals (job_id, job_variants_id, attempt, method, pairs, max_iou, max_io_text, created_at)
     VALUES ($1, $2, 1, 'measured', '[]', $3, 0.01, $4)`,
    [jobId, v, o.iou, at],
  );
}

const job = await seedJob(db.pool, {
  tenantId: 'views_tenant',
  variants: 2,
  variantStep: 'iou_eval',
  variantStatus: 'done',
});
const [v1, v2] = job.variantIds as [string, string];
await q(
  `UPDATE jobs SET current_step = 'instagram_feed_gen', status = 'done', completed_at = created_at + interval '42 seconds' WHERE job_id = $1`,
  [job.jobId],
);
for (const [i, step] of VARIANT_STEPS.entries()) {
  await run(job.jobId, v1, step, 1, 60_000 - i * 1000, 500);
  await run(job.jobId, v2, step, 1, 60_000 - i * 1000, 700);
}
// v2's judge ran twice: the view's timing is the latest attempt, its runs keep both.
await run(job.jobId, v2, 'vlm_judge', 2, 10_000, 900);
await run(job.jobId, null, 'ad_copy_gen_kor', 1, 5000, 1000);
await run(job.jobId, null, 'instagram_feed_gen', 1, 3000, 2000);
// An older run of v1's results, then the newest: the view shows only the newest.
await results(job.jobId, v1, {
  judge: 2,
  cer: [0.9],
  iou: 0.9,
  at: '2026-01-01T00:00:00Z',
  overlayKey: 'overlay/old.png',
});
await results(job.jobId, v1, {
  judge: 8.5,
  cer: [0.1, 0.3],
  iou: 0.02,
  at: '2026-01-01T00:01:00Z',
  overlayKey: 'overlay/new.png',
});
await results(job.jobId, v2, {
  judge: 6,
  cer: [0.2],
  iou: 0.05,
  at: '2026-01-01T00:01:00Z',
  overlayKey: 'https://cdn.example/v2.png',
});
await q(
  `INSERT INTO job_ad_copies (job_id, headline_eng, eng_method, tagline_kor, ad_copy_kor, kor_method) VALUES ($1, 'Slow mornings', 'input', '오늘의 한 잔', '부드러운 아침', 'template')`,
  [job.jobId],
);
await q(
  `INSERT INTO stage_instagram_feeds (job_id, attempt, method, chosen_variant_id, scores, caption, hashtags, feed_image_key)
   VALUES ($1, 1, 'template', $2, '[{"variant":1}]', 'A calm cup', '["#coffee","#morning"]', 'feed/x.png')`,
  [job.jobId, v1],
);
await q(
  `INSERT INTO stage_run_timings (job_id, job_variants_id, step, attempt, outcome, received_at, admitted_at, wait_ms, work_ms)
   VALUES ($1, $2, 'overlay', 1, 'done', now(), now(), 12, 340), ($1, NULL, 'ad_copy_gen_kor', 1, 'done', now(), now(), 0, 55)`,
  [job.jobId, v1],
);

t.test('a finished job: state, results of the newest run, scores, chosen, timings', async (t) => {
  const storageDir = path.resolve('/srv/storage');
  const view = await readJobView(db.pool, job.jobId, { storageDir });
  if (!view) throw new Error('no view');
  t.match(view, {
    id: job.jobId,
    tenantId: 'views_tenant',
    step: 'instagram_feed_gen',
    status: 'done',
    done: true,
    outcome: 'done',
    progress: 10,
  });
  t.equal(view.durationMs, 42_000, 'created to completed');
  t.equal(view.elapsedMs, 42_000, 'a completed job stops its clock');
  t.equal(view.inputs?.tone, 'friendly');
  t.match(view.adCopy, { headlineEng: 'Slow mornings', adCopyKor: '부드러운 아침', korMethod: 'template' });
  t.match(view.feed, {
    caption: 'A calm cup',
    hashtags: ['#coffee', '#morning'],
    chosenVariantId: v1,
    feedImagePath: path.join(storageDir, 'feed/x.png'),
  });
  t.same(
    view.timings.map((r) => r.step),
    ['ad_copy_gen_kor', 'instagram_feed_gen'],
    'job-level timings',
  );
  t.same(
    view.stageTimings.map((s) => [s.step, s.waitMs, s.workMs]),
    [['ad_copy_gen_kor', 0, 55]],
  );

  t.same(
    view.variants.map((v) => [v.order, v.id]),
    [
      [1, v1],
      [2, v2],
    ],
    'variants in creation order',
  );
  const [a, b] = view.variants as [NonNullable<(typeof view.variants)[0]>, NonNullable<(typeof view.variants)[1]>];
  t.equal(a.chosen, true, 'the feed chose variant 1');
  t.equal(b.chosen, false);
  t.equal(a.progress, 10, 'a finished variant counts the job-level steps');
  t.equal(a.evaluations.judge?.score, 8.5, 'newest run only');
  t.equal(a.overlay?.imageKey, 'overlay/new.png');
  t.equal(a.overlay?.imagePath, path.join(storageDir, 'overlay/new.png'));
  t.equal(b.overlay?.imagePath, 'https://cdn.example/v2.png', 'URLs are left as they are');
  t.equal(a.evaluations.ocr?.lines.length, 2, 'every OCR line of the newest run');
  t.equal(a.scores.ocrMeanCer, 0.2);
  t.same(a.scores, { judge: 8.5, ocrMeanCer: 0.2, readabilityPass: true, minContrast: 4.5, maxIou: 0.02 });
  t.same(
    a.planner?.proposals.map((p) => [p.rank, p.chosen, p.rejected]),
    [
      [1, true, null],
      [2, false, 'covers the product'],
    ],
  );
  t.equal(a.planner?.chosenRank, 1);
  t.equal(a.planner?.previewPath, path.join(storageDir, `planner/${v1}.png`));
  t.same(
    a.overlay?.lines.map((l) => l.text),
    ['Slow mornings'],
  );
  t.equal(a.detections?.items[0]?.label, 'cup');
  t.equal(a.vlmAnalysis?.usable, true);
  t.same(
    a.timings.map((r) => r.step),
    VARIANT_STEPS,
    'a timing for every variant step, in step order',
  );
  t.ok(a.timings.every((r) => r.durationMs === 500 && !r.open && r.instanceId === 'test-instance'));
  t.same(
    a.stageTimings.map((s) => [s.step, s.waitMs, s.workMs]),
    [['overlay', 12, 340]],
  );
  const judge = b.timings.find((r) => r.step === 'vlm_judge');
  t.equal(judge?.attempt, 2, 'the latest attempt of a step');
  t.same(
    b.runs.filter((r) => r.step === 'vlm_judge').map((r) => r.attempt),
    [1, 2],
    'every attempt in the timeline',
  );
  t.equal(b.runs.length, 9);
});

t.test('a running job: progress, open runs, no results yet', async (t) => {
  const s = await seedJob(db.pool, {
    tenantId: 'views_tenant',
    variants: 2,
    variantStep: 'planner',
    variantStatus: 'running',
  });
  await q(
    `UPDATE jobs_variants SET current_step = 'overlay', status = 'failed', attempt = 3, last_error = 'font missing', given_up_at = now() WHERE job_variants_id = $1`,
    [s.variantIds[1]],
  );
  await run(s.jobId, s.variantIds[0] as string, 'planner', 1, 2000, null);
  const view = await readJobView(db.pool, s.jobId);
  if (!view) throw new Error('no view');
  t.equal(view.outcome, null, 'still moving');
  t.equal(view.done, false);
  t.equal(view.durationMs, null);
  const [a, b] = view.variants;
  t.equal(a?.progress, 2, 'vlm_analyze and yolo_detect done');
  t.equal(b?.progress, 3);
  t.equal(view.progress, 2.5, 'the mean of the variants');
  t.match(b, { step: 'overlay', status: 'failed', attempt: 3, lastError: 'font missing', givenUp: true });
  const open = a?.timings[0];
  t.equal(open?.open, true);
  t.equal(open?.durationMs, null);
  t.ok((open?.elapsedMs ?? 0) >= 2000, 'an open run counts to the database clock');
  t.same(a?.evaluations, { ocr: null, readability: null, iou: null, judge: null });
  t.same(a?.scores, { judge: null, ocrMeanCer: null, readabilityPass: null, minContrast: null, maxIou: null });
  t.equal(a?.planner, null);
  t.equal(view.feed, null);
  t.equal(view.adCopy, null);
});

t.test('selections: by ids in the order given, a tenant newest first, a variant with its job', async (t) => {
  const other = await seedJob(db.pool, { tenantId: 'views_tenant', variants: 1 });
  const byIds = await readJobViews(db.pool, {
    jobIds: [other.jobId, job.jobId, '00000000-0000-4000-8000-000000000000'],
  });
  t.same(
    byIds.map((j) => j.id),
    [other.jobId, job.jobId],
    'unknown ids are left out',
  );
  const tenant = await readJobViews(db.pool, { tenantId: 'views_tenant', limit: 2 });
  t.equal(tenant.length, 2);
  t.equal(tenant[0]?.id, other.jobId, 'newest first');
  t.same(await readJobViews(db.pool, { tenantId: 'nobody' }), []);
  t.same(await readJobViews(db.pool, { jobIds: [] }), []);
  t.equal(await readJobView(db.pool, '00000000-0000-4000-8000-000000000000'), null);
  const one = await readVariantView(db.pool, v2);
  t.equal(one?.variant.id, v2);
  t.equal(one?.job.id, job.jobId);
  t.equal(await readVariantView(db.pool, '00000000-0000-4000-8000-000000000000'), null);
});

t.test('bad input is a clear error, not a database error', async (t) => {
  await t.rejects(readJobView(db.pool, 'not-a-uuid'), {
    name: 'TypeError',
    message: /job id must be a UUID, got "not-a-uuid"/,
  });
  await t.rejects(readVariantView(db.pool, "x'; DROP TABLE jobs"), {
    name: 'TypeError',
    message: /variant id must be a UUID/,
  });
  await t.rejects(readJobViews(db.pool, { tenantId: 't', limit: 0 }), {
    name: 'TypeError',
    message: /limit must be a positive integer/,
  });
});

t.test("a missing table of the stage server's set is PostgreSQL's 42P01, for the caller to report", async (t) => {
  const bare = await testDb();
  t.teardown(() => bare.close());
  const s = await seedJob(bare.pool, { variants: 1 });
  await bare.pool.query('DROP TABLE stage_run_timings');
  await t.rejects(readJobView(bare.pool, s.jobId), { code: '42P01' });
});

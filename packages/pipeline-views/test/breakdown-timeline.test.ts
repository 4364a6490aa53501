/**
 * What the dashboard's job page reads beyond the views (docs/dashboard.md):
 * the image asset ids and the run log's sent time (read from a real
 * PostgreSQL), the score breakdown of the feed step's choice and the job's
 * timeline (pure functions of a view).
 */
import t from 'tap';
import { type JobView, readJobView, scoreBreakdown, timelineOf } from '../src/index.js';
import { seedJob, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const q = (sql: string, params: unknown[] = []) => db.pool.query(sql, params);

async function asset(key: string): Promise<string> {
  const r = await q(
    `INSERT INTO image_assets (image_type, image_url, tenant_id) VALUES ('overlay', $1, 't') RETURNING image_asset_id::text AS id`,
    [key],
  );
  return r.rows[0].id;
}

/** The score table as instagram_feed_gen stores it (apps/stage-api/src/vision/score.ts). */
function scoreRow(
  id: string,
  order: number,
  c: { judge: number; ocr: number; readability: number; overlap: number; capped?: boolean; over?: number },
  score?: number,
) {
  const raw = 100 * (0.25 * c.judge + 0.25 * c.ocr + 0.3 * c.readability + 0.2 * c.overlap);
  return {
    job_variants_id: id,
    creation_order: order,
    score: score ?? Math.round((c.capped ? Math.min(raw, 50) : raw) * 100) / 100,
    components: {
      judge: c.judge,
      ocr: c.ocr,
      meanCer: 0.05,
      readability: c.readability,
      overlap: c.overlap,
      maxTextOverObject: c.over ?? 0,
      capped: c.capped ? 1 : 0,
    },
  };
}

t.test('asset ids and sent times are read; the timeline lays every run on one axis', async (t) => {
  const s = await seedJob(db.pool, {
    variants: 2,
    variantStep: 'iou_eval',
    variantStatus: 'done',
    imageUrl: 'uploads/in.png',
  });
  const [v1, v2] = s.variantIds as [string, string];
  const creative = await asset('overlay/v1.png');
  const feedAsset = await asset('feed/f.png');
  await q(
    `INSERT INTO stage_overlays (job_id, job_variants_id, attempt, method, headline, texts, treatment, layout, image_key, image_asset_id, width, height)
     VALUES ($1, $2, 1, 'canvas', 'Slow mornings', '{}', '{}', '{"lines":[]}', 'overlay/v1.png', $3, 800, 600)`,
    [s.jobId, v1, creative],
  );
  await q(
    `INSERT INTO stage_instagram_feeds (job_id, attempt, method, chosen_variant_id, scores, caption, hashtags, feed_image_key, feed_asset_id)
     VALUES ($1, 1, 'template', $2, '[]', '오늘의 커피', '[]', 'feed/f.png', $3)`,
    [s.jobId, v1, feedAsset],
  );
  const base = Date.parse('2026-03-01T00:00:00Z');
  const at = (ms: number) => new Date(base + ms).toISOString();
  const runs: Array<[string | null, string, number, number, number | null, string, number | null, string | null]> = [
    [v1, 'vlm_analyze', 1, 0, 1000, 'succeeded', 200, null],
    [v2, 'vlm_analyze', 1, 100, 500, 'failed', 500, 'model timeout'],
    [v2, 'vlm_analyze', 2, 3000, 1000, 'succeeded', 200, null],
    [null, 'ad_copy_gen_kor', 1, 5000, null, 'dispatched', null, null],
  ];
  for (const [variant, step, attempt, start, took, state, http, error] of runs) {
    await q(
      `INSERT INTO pipeline_step_runs (job_id, job_variants_id, step, attempt, trigger, state, instance_id, claimed_at, sent_at, finished_at, http_status, error)
       VALUES ($1, $2, $3, $4, 'notify', $5, 'host-a:1', $6, $7, $8, $9, $10)`,
      [
        s.jobId,
        variant,
        step,
        attempt,
        state,
        at(start),
        at(start + 20),
        took === null ? null : at(start + took),
        http,
        error,
      ],
    );
  }
  const view = await readJobView(db.pool, s.jobId);
  if (!view) throw new Error('no view');
  t.equal(view.inputs?.imageAssetId, s.imageAssetId, 'the input photo asset');
  t.equal(view.variants[0]?.overlay?.imageAssetId, creative, 'the creative asset');
  t.equal(view.feed?.feedAssetId, feedAsset, 'the feed image asset');
  t.equal(view.variants[0]?.runs[0]?.sentAt, at(20), 'sent_at of the run log');

  const tl = timelineOf(view);
  t.same(
    tl.entries.map((e) => [e.variantOrder, e.step, e.attempt, e.state, e.httpStatus, e.error]),
    [
      [1, 'vlm_analyze', 1, 'succeeded', 200, null],
      [2, 'vlm_analyze', 1, 'failed', 500, 'model timeout'],
      [2, 'vlm_analyze', 2, 'succeeded', 200, null],
      [null, 'ad_copy_gen_kor', 1, 'dispatched', null, null],
    ],
    'every attempt of every variant and of the job, oldest claim first',
  );
  t.equal(tl.startAt, at(0));
  t.equal(tl.entries[0]?.left, 0, 'the first claim starts the axis');
  t.equal(tl.entries[2]?.sentAt, at(3020));
  t.equal(tl.entries[3]?.open, true, 'a run without a finish is open');
  t.ok(
    tl.entries.every((e) => e.left >= 0 && e.left + e.width <= 100.01),
    'every bar on the axis',
  );
  t.equal(tl.entries[0]?.instanceId, 'host-a:1');
});

/** A view with just what the breakdown reads. */
function view(
  variants: Array<{ id: string; order: number }>,
  scores: unknown[] | null,
  chosen: string | null,
): JobView {
  return {
    variants: variants.map((v) => ({ ...v, step: 'iou_eval', status: 'done', givenUp: false, overlay: {} })),
    feed: scores === null ? null : { scores, chosenVariantId: chosen },
  } as unknown as JobView;
}

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';
const C = '33333333-3333-4333-8333-333333333333';
const three = [
  { id: A, order: 1 },
  { id: B, order: 2 },
  { id: C, order: 3 },
];

t.test('the breakdown: points per evaluation, rank, cap, and why the winner won', async (t) => {
  const b = scoreBreakdown(
    view(
      three,
      [
        scoreRow(A, 1, { judge: 0.8, ocr: 0.9, readability: 0.6, overlap: 1 }),
        scoreRow(B, 2, { judge: 0.9, ocr: 0.95, readability: 0.7, overlap: 0.4, capped: true, over: 0.03 }),
        scoreRow(C, 3, { judge: 0.7, ocr: 0.8, readability: 0.5, overlap: 1 }),
      ],
      A,
    ),
  );
  t.same(
    b.variants.map((v) => [v.order, v.score, v.rank, v.chosen, v.capped, v.consistent]),
    [
      [1, 80.5, 1, true, false, true],
      [3, 72.5, 2, false, false, true],
      [2, 50, 3, false, true, true],
    ],
  );
  t.same(
    b.variants[0]?.parts.map((p) => [p.key, p.points, p.maxPoints]),
    [
      ['judge', 20, 25],
      ['ocr', 22.5, 25],
      ['readability', 18, 30],
      ['overlap', 20, 20],
    ],
    'each evaluation: its points out of its weight',
  );
  t.equal(b.variants[2]?.uncapped, 75.25, 'the capped variant keeps its points before the cap');
  t.equal(b.why, 'Variant #1 scored 80.50, 8.00 points ahead of #3, mostly on Readability +3.00 and VLM judge +2.50.');
  t.same(b.unscored, []);
});

t.test('the breakdown explains a cap, a tie, a single variant, and a job not scored yet', async (t) => {
  const capped = scoreBreakdown(
    view(
      three.slice(0, 2),
      [
        scoreRow(A, 1, { judge: 0.5, ocr: 0.5, readability: 0.5, overlap: 1 }),
        scoreRow(B, 2, { judge: 1, ocr: 1, readability: 1, overlap: 0, capped: true, over: 0.2 }),
      ],
      A,
    ),
  );
  t.match(capped.why, /#2 was capped at 50 because its text covers a detected object\.$/);

  const tie = scoreBreakdown(
    view(
      three.slice(0, 2),
      [
        scoreRow(B, 2, { judge: 0.5, ocr: 0.5, readability: 0.5, overlap: 1 }),
        scoreRow(A, 1, { judge: 0.5, ocr: 0.5, readability: 0.5, overlap: 1 }),
      ],
      A,
    ),
  );
  t.same(
    tie.variants.map((v) => v.order),
    [1, 2],
    'ties go to the earlier variant',
  );
  t.match(tie.why, /tied with #2 .*ties go to the earlier variant/);

  const single = scoreBreakdown(view(three, [scoreRow(C, 3, { judge: 1, ocr: 1, readability: 1, overlap: 1 })], C));
  t.match(single.why, /Variant #3 won as the only variant/);
  t.same(
    single.unscored.map((u) => u.order),
    [1, 2],
    'the variants the feed step did not score',
  );

  const none = scoreBreakdown(view(three, null, null));
  t.match(none.why, /No variant is chosen until the Instagram feed step/);
  t.equal(none.unscored.length, 3);

  const odd = scoreBreakdown(
    view(three.slice(0, 1), [scoreRow(A, 1, { judge: 1, ocr: 1, readability: 1, overlap: 1 }, 42)], A),
  );
  t.equal(odd.variants[0]?.consistent, false, 'a stored score that its parts do not add up to is flagged');
});

import fc from 'fast-check';
import t from 'tap';
import {
  chooseProposalForVariant,
  decodeImage,
  detectSaliency,
  planPlacements,
  renderCreative,
  treatmentForVariant,
} from '../../src/vision/index.js';
import { clipBox, contrastOfColors, dilate, intersection, parseColor } from '../../src/vision/raster.js';
import type { Detection } from '../../src/vision/types.js';
import { fixture, solid } from './helpers.js';

const TEXTS = { headline: 'Slow mornings, better coffee', tagline: '오늘의 한 잔, 천천히 즐기세요' };

t.test('the chosen placement never overlaps a dilated detection (property)', async (t) => {
  const img = solid(480, 360, [120, 140, 160]);
  const margin = Math.round(0.05 * 360);
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          x: fc.integer({ min: 0, max: 440 }),
          y: fc.integer({ min: 0, max: 320 }),
          w: fc.integer({ min: 10, max: 300 }),
          h: fc.integer({ min: 10, max: 250 }),
        }),
        { minLength: 0, maxLength: 3 },
      ),
      fc.integer({ min: 1, max: 5 }),
      (boxes, k) => {
        const dets: Detection[] = boxes.map((box) => ({ label: 'salient_object', classId: -1, score: 1, box }));
        const plan = planPlacements(img, dets, TEXTS);
        const idx = chooseProposalForVariant(plan, k);
        const p = plan.proposals[idx]!;
        if (p.rejected) return false;
        for (const d of dets) {
          if (intersection(p.region, clipBox(dilate(d.box, margin), 480, 360)) > 0) return false;
          for (const l of p.lines) if (intersection(l.box, d.box) > 0) return false;
        }
        return true;
      },
    ),
    { numRuns: 40, seed: 42 },
  );
  t.pass('40 random scenes: no chosen placement touches a dilated object');
});

t.test('proposals: valid first by score, rejected ones kept with reasons, k-th variant takes the k-th', async (t) => {
  const img = await decodeImage(fixture('rocket.jpg'));
  const dets: Detection[] = [{ label: 'rocket', classId: -1, score: 1, box: { x: 260, y: 140, w: 220, h: 287 } }];
  const plan = planPlacements(img, dets, TEXTS);
  t.equal(plan.chosen, 0);
  const firstRejected = plan.proposals.findIndex((p) => p.rejected);
  t.ok(firstRejected > 2, 'several valid placements');
  t.ok(
    plan.proposals.slice(firstRejected).every((p) => p.rejected),
    'valid ones first',
  );
  t.ok(plan.proposals.some((p) => /overlaps rocket .* dilated by 21px/.test(p.rejected ?? '')));
  t.ok(plan.proposals.every((p, i) => p.rank === i));
  const first = plan.proposals[0]!;
  t.ok(first.lines.length >= 2 && first.lines[0]!.role === 'headline' && first.lines.at(-1)!.role === 'tagline');
  t.ok(first.lines.every((l) => l.fontSize >= 16));
  const anchors = [1, 2, 3].map((k) => plan.proposals[chooseProposalForVariant(plan, k)]!.anchor);
  t.equal(new Set(anchors).size, 3, `three variants, three different placements: ${anchors.join(', ')}`);
  const valid = plan.proposals.filter((p) => !p.rejected).length;
  t.equal(chooseProposalForVariant(plan, valid + 1), 0, 'wraps around');
});

t.test('no room in the photo: a caption band below it, and the renderer extends the canvas', async (t) => {
  const img = solid(400, 300, [200, 120, 80]);
  const dets: Detection[] = [{ label: 'salient_object', classId: -1, score: 1, box: { x: 10, y: 10, w: 380, h: 280 } }];
  const plan = planPlacements(img, dets, TEXTS);
  const p = plan.proposals[0]!;
  t.equal(p.rejected, null);
  t.equal(p.anchor, 'band-bottom');
  t.ok(p.canvas && p.canvas.width === 400 && p.canvas.height > 300);
  t.ok(
    p.lines.every((l) => l.box.y > 300),
    'all text below the photo',
  );
  const r = await renderCreative(img, p, TEXTS, treatmentForVariant(1, img));
  t.equal(r.layout.height, p.canvas!.height);
  t.same(r.layout.underlayBox, { x: 0, y: 300, w: 400, h: p.canvas!.height - 300 });
});

t.test('treatments differ per variant and keep their text legible on their panel', async (t) => {
  const img = await decodeImage(fixture('coffee.png'));
  const names = [1, 2, 3, 4].map((k) => treatmentForVariant(k, img).name);
  t.same(names, ['dark-panel', 'light-panel', 'brand-panel', 'dark-panel']);
  for (const k of [1, 2, 3]) {
    const tr = treatmentForVariant(k, img);
    const panel = parseColor(tr.underlay!);
    const text = parseColor(tr.textColor).rgb;
    for (const photo of [0, 255]) {
      const seen = panel.rgb.map((v) => panel.alpha * v + (1 - panel.alpha) * photo) as [number, number, number];
      t.ok(contrastOfColors(text, seen) >= 4.5, `${tr.name} over a ${photo ? 'white' : 'black'} photo`);
    }
  }
});

t.test('renderer re-typesets when given other texts than planned, and rejects an empty proposal', async (t) => {
  const img = solid(600, 400, [90, 90, 90]);
  const plan = planPlacements(img, [], TEXTS);
  const r = await renderCreative(
    img,
    plan.proposals[0]!,
    { headline: 'Fresh beans every week' },
    treatmentForVariant(1, img),
  );
  t.same(
    r.layout.lines.map((l) => l.role),
    r.layout.lines.map(() => 'headline'),
  );
  t.equal(r.layout.lines.map((l) => l.text).join(' '), 'Fresh beans every week');
  await t.rejects(
    renderCreative(img, { ...plan.proposals[0]!, lines: [] }, TEXTS, treatmentForVariant(1, img)),
    /at least one line/,
  );
  t.throws(() => planPlacements(img, [], { headline: '  ' }), /non-empty headline/);
});

t.test('edge cases: tiny photo, long copy, no tagline, a flat image', async (t) => {
  const tiny = solid(64, 64, [30, 60, 90]);
  const plan = planPlacements(tiny, detectSaliency(tiny), TEXTS);
  const p = plan.proposals[chooseProposalForVariant(plan, 1)]!;
  t.equal(p.rejected, null, 'a valid placement even on a 64px photo');
  const r = await renderCreative(tiny, p, TEXTS, treatmentForVariant(2, tiny));
  t.ok(
    r.layout.lines.every(
      (l) => l.box.x >= 0 && l.box.x + l.box.w <= r.layout.width && l.box.y + l.box.h <= r.layout.height,
    ),
  );
  t.ok(
    r.layout.lines.every((l) => l.box.y >= 64),
    'below the photo',
  );

  const long = {
    headline: 'A remarkably long headline that keeps going well past what anyone would put on a small square ad',
  };
  const img = solid(300, 300, [200, 200, 200]);
  const lp = planPlacements(img, [], long);
  t.ok(lp.proposals.some((x) => !x.rejected));
  const lr = await renderCreative(img, lp.proposals[0]!, long, treatmentForVariant(1, img));
  t.equal(lr.layout.lines.map((l) => l.text).join(' '), long.headline);
  t.ok(
    lr.layout.lines.every((l) => l.role === 'headline'),
    'no tagline lines without a tagline',
  );

  // One unbreakable word wider than the photo, and a very long copy: still a valid band.
  const url = {
    headline: 'www.an-extremely-long-unbreakable-address-for-the-shop.example.com',
    tagline: '가'.repeat(10),
  };
  const up = planPlacements(solid(200, 150, [10, 10, 10]), [], url);
  const upChosen = up.proposals[chooseProposalForVariant(up, 1)]!;
  t.equal(upChosen.rejected, null);
  t.ok(upChosen.canvas && upChosen.canvas.width > 200, 'the canvas is widened for the word');
  const essay = { headline: Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ') };
  const ep = planPlacements(solid(200, 150, [10, 10, 10]), [], essay);
  t.equal(ep.proposals[0]!.rejected, null);
  // At most 6 lines (docs/stage-api.md, "Rendering bounds"): the copy that does not fit is cut with an ellipsis.
  const essayLines = ep.proposals[0]!.lines.map((l) => l.text);
  t.ok(essayLines.length <= 6, `${essayLines.length} lines`);
  t.match(essayLines.at(-1), /\u2026$/, 'ends with an ellipsis');
  t.ok(essay.headline.startsWith(essayLines.join(' ').slice(0, -1).trimEnd()), 'the beginning of the copy');

  const flat = solid(400, 300, [128, 128, 128]);
  const dets = detectSaliency(flat);
  t.ok(dets.length >= 1 && dets.length <= 3);
  t.ok(dets.every((d) => d.box.x >= 0 && d.box.y >= 0 && d.box.x + d.box.w <= 400 && d.box.y + d.box.h <= 300));
});

/**
 * Rendering bounds (docs/stage-api.md, "Rendering bounds"), with real renders:
 * a 3,000-character word never makes a canvas wider than MAX_CANVAS_SIDE or
 * more than MAX_TEXT_LINES lines; over-wide words are broken and the
 * overflow ellipsised; a plan larger than the bound is scaled down whole.
 */
import sharp from 'sharp';
import t from 'tap';
import { decodeImage, planPlacements, renderCreative, treatmentForVariant } from '../../src/vision/index.js';
import { MAX_CANVAS_SIDE, MAX_TEXT_LINES, breakLongWords, wrapBounded } from '../../src/vision/layout.js';
import { measureLine } from '../../src/vision/fonts.js';
import type { AdTexts, PlacementProposal, RasterImage } from '../../src/vision/types.js';
import { fixture, solid } from './helpers.js';

const widthOf = (s: string, size: number, weight: number) => {
  const m = measureLine(s, size, weight);
  return m.left + m.right;
};

async function renderPlanned(img: RasterImage, texts: AdTexts) {
  const plan = planPlacements(img, [], texts);
  const proposal = plan.proposals[plan.chosen] as PlacementProposal;
  const out = await renderCreative(img, proposal, texts, treatmentForVariant(1, img));
  const meta = await sharp(out.png).metadata();
  return { proposal, out, meta };
}

t.test('a 3,000-character word: canvas within 4096 x 4096, at most 6 lines, ellipsised', async (t) => {
  const img = await decodeImage(fixture('coffee.png'));
  const cases: Array<[string, AdTexts]> = [
    ['headline', { headline: 'W'.repeat(3000) }],
    ['headline and tagline', { headline: 'W'.repeat(3000), tagline: '가'.repeat(3000) }],
    ['tagline', { headline: 'Fresh coffee', tagline: 'm'.repeat(3000) }],
  ];
  for (const [name, texts] of cases) {
    const { proposal, out, meta } = await renderPlanned(img, texts);
    t.ok(
      (meta.width ?? 0) <= MAX_CANVAS_SIDE && (meta.height ?? 0) <= MAX_CANVAS_SIDE,
      `${name}: PNG ${meta.width}x${meta.height}`,
    );
    t.equal(out.layout.width, meta.width, `${name}: layout width is the PNG's`);
    t.equal(out.layout.height, meta.height, `${name}: layout height is the PNG's`);
    t.ok(out.layout.lines.length <= MAX_TEXT_LINES, `${name}: ${out.layout.lines.length} lines`);
    t.ok(proposal.lines.length <= MAX_TEXT_LINES, `${name}: the plan has at most ${MAX_TEXT_LINES} lines`);
    for (const l of out.layout.lines) {
      t.ok(
        l.box.x >= 0 && l.box.x + l.box.w <= out.layout.width + 1,
        `${name}: "${l.text.slice(0, 12)}…" inside the canvas`,
      );
    }
    t.ok(
      out.layout.lines.some((l) => l.text.endsWith('\u2026')),
      `${name}: the text that did not fit ends with an ellipsis`,
    );
  }
});

t.test('a tiny photo: a word wider than it widens the canvas only while the word fits the bound', async (t) => {
  const img = solid(120, 90, [200, 200, 200]);
  const medium = await renderPlanned(img, { headline: `Super${'x'.repeat(60)}` });
  t.ok((medium.meta.width ?? 0) > img.width, `a 65-character word widens the canvas (${medium.meta.width})`);
  t.ok((medium.meta.width ?? 0) <= MAX_CANVAS_SIDE);
  t.equal(medium.out.layout.lines.length, 1, 'unbroken');
  const huge = await renderPlanned(img, { headline: `Super${'x'.repeat(3000)}` });
  t.equal(huge.meta.width, img.width, 'a 3,005-character word is broken at the photo width instead');
  t.ok((huge.meta.height ?? 0) <= MAX_CANVAS_SIDE, `height ${huge.meta.height}`);
  t.ok(huge.out.layout.lines.length <= MAX_TEXT_LINES);
});

t.test('a plan larger than the bound (an older stored proposal) is scaled down whole', async (t) => {
  const img = await decodeImage(fixture('coffee.png'));
  const word = 'W'.repeat(3000);
  const legacy: PlacementProposal = {
    rank: 0,
    region: { x: 10, y: img.height + 5, w: 29_000, h: 30 },
    lines: [
      {
        role: 'headline',
        text: word,
        box: { x: 12, y: img.height + 8, w: 29_000, h: 20 },
        fontSize: 12,
        fontWeight: 700,
      },
    ],
    score: 0,
    components: {},
    rejected: null,
    canvas: { width: 30_000, height: img.height + 40 },
  };
  const out = await renderCreative(img, legacy, { headline: word }, treatmentForVariant(1, img));
  const meta = await sharp(out.png).metadata();
  t.equal(meta.width, MAX_CANVAS_SIDE, 'clamped to the bound');
  t.ok((meta.height ?? 0) < img.height, 'scaled in proportion');
  t.same([out.layout.width, out.layout.height], [meta.width, meta.height], 'the layout describes the PNG');

  // More planned lines than the bound: typeset again within it.
  const many: PlacementProposal = {
    ...legacy,
    region: { x: 20, y: 20, w: 400, h: 300 },
    canvas: undefined,
    lines: Array.from({ length: 10 }, (_, i) => ({
      role: 'headline' as const,
      text: `line${i}`,
      box: { x: 30, y: 30 + i * 25, w: 80, h: 20 },
      fontSize: 20,
      fontWeight: 700,
    })),
  };
  delete many.canvas;
  const texts = { headline: Array.from({ length: 10 }, (_, i) => `line${i}`).join(' ') };
  const out2 = await renderCreative(img, many, texts, treatmentForVariant(1, img));
  t.ok(out2.layout.lines.length <= MAX_TEXT_LINES, `${out2.layout.lines.length} lines drawn`);
});

t.test('breakLongWords and wrapBounded keep every line within the width', async (t) => {
  const pieces = breakLongWords(`a ${'W'.repeat(500)} b`, 20, 700, 300);
  t.ok(pieces.length > 3, `${pieces.length} pieces`);
  t.same([pieces[0], pieces.at(-1)], ['a', 'b'], 'short words kept whole');
  t.ok(
    pieces.every((p) => widthOf(p, 20, 700) <= 300),
    'every piece fits',
  );
  t.equal(pieces.join('').replace(/[ab]/g, '').length, 500, 'no character lost');
  const hangul = breakLongWords('가'.repeat(200), 20, 700, 150);
  t.ok(hangul.every((p) => widthOf(p, 20, 700) <= 150));
  const lines = wrapBounded('W'.repeat(3000), 20, 700, 300, 4);
  t.equal(lines.length, 4);
  t.ok(
    lines.every((l) => widthOf(l, 20, 700) <= 300),
    'every line fits',
  );
  t.ok(lines[3]?.endsWith('\u2026'), 'the last line is ellipsised');
  t.same(
    wrapBounded('Slow mornings, better coffee', 20, 700, 2000, 4),
    ['Slow mornings, better coffee'],
    'short text unchanged',
  );
});

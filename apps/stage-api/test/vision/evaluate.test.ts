import { createCanvas } from '@napi-rs/canvas';
import t from 'tap';
import {
  characterErrorRate,
  ensureFonts,
  iouEvaluate,
  judgeHeuristic,
  levenshtein,
  measureLine,
  readabilityEvaluate,
  scoreVariant,
} from '../../src/vision/index.js';
import { contrastOfColors } from '../../src/vision/raster.js';
import type { CreativeLayout, RasterImage } from '../../src/vision/types.js';

/** Draws `text` in `fg` on a solid `bg` canvas and returns the image and its layout. */
function synthetic(
  fg: string,
  bg: string,
  text = 'Readable text 42',
  size = 40,
  weight = 700,
): { img: RasterImage; layout: CreativeLayout } {
  ensureFonts();
  const canvas = createCanvas(600, 160);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = bg;
  ctx.fillRect(0, 0, 600, 160);
  ctx.font = `${weight} ${size}px Pretendard`;
  ctx.fillStyle = fg;
  const m = measureLine(text, size, weight);
  ctx.fillText(text, 40, 90);
  const data = ctx.getImageData(0, 0, 600, 160).data;
  return {
    img: { width: 600, height: 160, data: new Uint8Array(data.buffer, data.byteOffset, data.length) },
    layout: {
      width: 600,
      height: 160,
      treatment: { name: 'test', textColor: fg, underlay: null, shadow: false },
      underlayBox: null,
      lines: [
        {
          role: 'headline',
          text,
          lang: 'eng',
          box: { x: 40 - m.left, y: 90 - m.ascent, w: m.left + m.right, h: m.ascent + m.descent },
          fontSize: size,
          fontWeight: weight,
          fontFamily: 'Pretendard',
          color: fg,
        },
      ],
    },
  };
}

t.test('WCAG contrast of known colour pairs', async (t) => {
  t.equal(Math.round(contrastOfColors([255, 255, 255], [0, 0, 0]) * 100) / 100, 21);
  t.equal(Math.round(contrastOfColors([0x77, 0x77, 0x77], [255, 255, 255]) * 100) / 100, 4.48);
});

t.test('readability on synthetic images with known contrast', async (t) => {
  const wb = synthetic('#ffffff', '#000000');
  const r1 = readabilityEvaluate(wb.img, wb.layout);
  t.equal(r1.lines[0]!.contrastP5, 21, 'white on black is 21:1 at the 5th percentile');
  t.equal(r1.lines[0]!.clutter, 0);
  t.equal(r1.pass, true);
  t.same(r1.thresholds, { minContrast: 4.5, maxClutter: 0.12, percentile: 5 });

  const grey = synthetic('#777777', '#ffffff');
  const r2 = readabilityEvaluate(grey.img, grey.layout);
  t.ok(Math.abs(r2.lines[0]!.contrastP5 - 4.48) < 0.01, `#777 on white ≈ 4.48 (got ${r2.lines[0]!.contrastP5})`);
  t.equal(r2.pass, false, 'just below AA');

  // White text on a half-white, half-black background: the median looks fine, the 5th percentile does not.
  const half = synthetic('#ffffff', '#000000');
  for (let y = 0; y < 160; y++) {
    for (let x = 300; x < 600; x++) {
      const i = (y * 600 + x) * 4;
      half.img.data[i] = 255;
      half.img.data[i + 1] = 255;
      half.img.data[i + 2] = 255;
    }
  }
  const r3 = readabilityEvaluate(half.img, half.layout);
  t.ok(r3.lines[0]!.contrastP5 < 1.5, `the low percentile sees the white half (${r3.lines[0]!.contrastP5})`);
  t.equal(r3.pass, false);
});

t.test(
  'readability: thin Hangul strokes on a panel are glyph, not background; a busy photo is not excused',
  async (t) => {
    const thin = synthetic('#17171a', '#ffffff', '프리미엄 원두로 내린 깊은 풍미', 16, 600);
    const r = readabilityEvaluate(thin.img, thin.layout);
    t.ok(r.lines[0]!.contrastP5 > 15, `16px SemiBold Hangul on white: P5 ${r.lines[0]!.contrastP5}`);
    // White text over random grey noise (a busy photo): the bright noise pixels count.
    const busy = synthetic('#ffffff', '#000000', 'Readable text 42');
    let seed = 7;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let i = 0; i < busy.img.width * busy.img.height; i++) {
      if (busy.img.data[i * 4] === 255) continue;
      const v = Math.floor(rnd() * 256);
      busy.img.data[i * 4] = v;
      busy.img.data[i * 4 + 1] = v;
      busy.img.data[i * 4 + 2] = v;
    }
    const rb = readabilityEvaluate(busy.img, busy.layout);
    t.ok(rb.lines[0]!.contrastP5 < 1.5, `busy background: P5 ${rb.lines[0]!.contrastP5}`);
    t.ok(rb.lines[0]!.clutter > 0.12, `and cluttered: ${rb.lines[0]!.clutter}`);
    t.equal(rb.pass, false);
  },
);

t.test('IoU and intersection over text area on known boxes', async (t) => {
  const layout: CreativeLayout = {
    width: 200,
    height: 200,
    treatment: { name: 'x', textColor: '#fff', underlay: null, shadow: false },
    underlayBox: { x: 0, y: 0, w: 100, h: 100 },
    lines: [
      {
        role: 'headline',
        text: 'a',
        lang: 'eng',
        box: { x: 0, y: 0, w: 10, h: 10 },
        fontSize: 10,
        fontWeight: 700,
        fontFamily: 'Pretendard',
        color: '#fff',
      },
      {
        role: 'tagline',
        text: 'b',
        lang: 'kor',
        box: { x: 100, y: 100, w: 10, h: 10 },
        fontSize: 10,
        fontWeight: 600,
        fontFamily: 'Pretendard',
        color: '#fff',
      },
    ],
  };
  const det = [{ label: 'cup', classId: 41, score: 0.9, box: { x: 5, y: 0, w: 10, h: 10 } }];
  const r = iouEvaluate(layout, det);
  const head = r.pairs.find((p) => p.role === 'headline')!;
  t.equal(head.iou, Math.round((50 / 150) * 10000) / 10000, 'half-overlapping equal boxes: 50 / 150');
  t.equal(head.ioText, 0.5);
  t.equal(r.pairs.find((p) => p.role === 'tagline')!.iou, 0, 'disjoint');
  const under = r.pairs.find((p) => p.role === 'underlay')!;
  t.equal(under.ioText, 0.01, 'underlay: 100 / 10000');
  t.equal(r.maxIou, head.iou);
  t.equal(r.maxIoText, 0.5);
  t.same(iouEvaluate(layout, []).pairs, []);
});

t.test('CER: Levenshtein over code points, NFC, whitespace collapsed, case-sensitive', async (t) => {
  t.equal(levenshtein('kitten', 'sitting'), 3);
  t.equal(characterErrorRate('Slow mornings', 'Slow mornings'), 0);
  t.equal(characterErrorRate('Slow mornings', '  Slow   mornings \n'), 0, 'whitespace collapsed');
  t.equal(
    characterErrorRate('Slow mornings', 'Slow momings'),
    2 / 13,
    'rn read as m: one substitution and one deletion',
  );
  t.equal(characterErrorRate('coffee', 'Coffee'), 1 / 6, 'case-sensitive');
  // Decomposed Hangul (NFD) equals the composed form after NFC.
  t.equal(characterErrorRate('한 잔', '한 잔'.normalize('NFD')), 0);
  t.equal(characterErrorRate('오늘의 한 잔', '오늘의 한 잠'), 1 / 7, 'one syllable of seven code points');
  t.equal(characterErrorRate('', ''), 0);
  t.equal(characterErrorRate('abc', ''), 1);
});

t.test('heuristic judge and the variant score reward clean creatives', async (t) => {
  const good = synthetic('#ffffff', '#000000');
  const j = judgeHeuristic(good.img, good.layout, []);
  t.ok(j.score >= 9, `clean creative scores high (${j.score})`);
  t.same(j.problems, []);
  const bad = synthetic('#777777', '#ffffff');
  const overlapping = [{ label: 'cup', classId: 41, score: 0.9, box: { ...bad.layout.lines[0]!.box } }];
  const jb = judgeHeuristic(bad.img, bad.layout, overlapping);
  t.ok(jb.score <= j.score - 3, `overlap costs 3 points, borderline contrast a little more (${jb.score})`);
  t.ok(jb.problems.some((p) => p.startsWith('text covers a detected object')));

  const s1 = scoreVariant({
    judge: j,
    ocr: [{ role: 'headline', lang: 'eng', expected: 'a', read: 'a', cer: 0, confidence: 95 }],
    readability: readabilityEvaluate(good.img, good.layout),
    iou: iouEvaluate(good.layout, []),
  });
  const s2 = scoreVariant({
    judge: jb,
    ocr: [{ role: 'headline', lang: 'eng', expected: 'a', read: 'b', cer: 1, confidence: 20 }],
    readability: readabilityEvaluate(bad.img, bad.layout),
    iou: iouEvaluate(bad.layout, overlapping),
  });
  t.ok(s1.score > 90, `clean: ${s1.score}`);
  t.ok(s2.score <= 50, `overlapping and unreadable is capped: ${s2.score}`);
  t.equal(s2.components['capped'], 1);
});

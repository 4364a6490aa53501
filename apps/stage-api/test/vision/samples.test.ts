/**
 * Quality of the creatives on the four sample photos (saliency detections,
 * variants 1-3): OCR CER <= 2% on English lines and <= 10% on Korean lines,
 * no text over an object (IoU 0), 5th-percentile contrast >= 4.5:1. The
 * rendered creatives and feed images are written to test-output/ to be looked at.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import {
  analyzeImageHeuristic,
  chooseProposalForVariant,
  composeFeedImage,
  createOcrEngine,
  decodeImage,
  detectSaliency,
  iouEvaluate,
  judgeHeuristic,
  planPlacements,
  readabilityEvaluate,
  renderCreative,
  scoreVariant,
  treatmentForVariant,
} from '../../src/vision/index.js';
import { intersection } from '../../src/vision/raster.js';
import type { Box } from '../../src/vision/types.js';
import { fixture, SAMPLES, TEST_OUTPUT } from './helpers.js';

const TEXTS = { headline: 'Slow mornings, better coffee', tagline: '오늘의 한 잔, 천천히 즐기세요' };

/** Hand-marked core of each subject (the part a box must cover). */
const SUBJECT_CORE: Record<string, { what: string; box: Box }> = {
  'coffee.png': { what: 'cup', box: { x: 180, y: 25, w: 225, h: 270 } },
  'chelsea.png': { what: "cat's face", box: { x: 140, y: 80, w: 210, h: 190 } },
  'rocket.jpg': { what: 'rocket body', box: { x: 300, y: 150, w: 40, h: 250 } },
  'astronaut.png': { what: "astronaut's face and torso", box: { x: 160, y: 30, w: 200, h: 330 } },
};

t.test('saliency boxes cover each sample subject', async (t) => {
  for (const name of SAMPLES) {
    const img = await decodeImage(fixture(name));
    const dets = detectSaliency(img);
    t.ok(dets.length >= 1 && dets.length <= 3, `${name}: ${dets.length} box(es)`);
    t.ok(dets.every((d) => d.label === 'salient_object' && d.classId === -1));
    const core = SUBJECT_CORE[name]!;
    // Coverage of the core by the union of boxes (area sampled on a 2px grid).
    let inside = 0;
    let total = 0;
    for (let y = core.box.y; y < core.box.y + core.box.h; y += 2) {
      for (let x = core.box.x; x < core.box.x + core.box.w; x += 2) {
        total++;
        if (dets.some((d) => intersection(d.box, { x, y, w: 1, h: 1 }) > 0)) inside++;
      }
    }
    const cover = inside / total;
    t.comment(
      `${name}: boxes ${JSON.stringify(dets.map((d) => d.box))}, ${core.what} covered ${(cover * 100).toFixed(1)}%`,
    );
    t.ok(cover >= 0.95, `${name}: the ${core.what} is inside the box(es)`);
  }
});

t.test('creatives: OCR, overlap and contrast on every sample and variant', async (t) => {
  const out = TEST_OUTPUT;
  mkdirSync(out, { recursive: true });
  const ocr = await createOcrEngine({ workers: 1 });
  t.teardown(() => ocr.close());
  for (const name of SAMPLES) {
    const img = await decodeImage(fixture(name));
    const analysis = analyzeImageHeuristic(img);
    const dets = detectSaliency(img);
    const plan = planPlacements(img, dets, TEXTS);
    for (const k of [1, 2, 3]) {
      const proposal = plan.proposals[chooseProposalForVariant(plan, k)]!;
      t.equal(proposal.rejected, null, `${name} v${k}: a valid placement`);
      const treatment = treatmentForVariant(k, img, analysis);
      const { png, layout } = await renderCreative(img, proposal, TEXTS, treatment);
      const base = name.replace(/\.\w+$/, '');
      writeFileSync(join(out, `${base}-v${k}.png`), png);
      writeFileSync(join(out, `${base}-v${k}-feed.jpg`), await composeFeedImage(png));
      const creative = await decodeImage(png);
      const lines = await ocr.evaluate(png, layout);
      const read = readabilityEvaluate(creative, layout);
      const iou = iouEvaluate(layout, dets);
      const judge = judgeHeuristic(creative, layout, dets);
      const score = scoreVariant({ judge, ocr: lines, readability: read, iou });
      t.comment(
        `${name} v${k} ${treatment.name} @ ${proposal.anchor}: maxIoU ${iou.maxIou}, judge ${judge.score}, score ${score.score}`,
      );
      lines.forEach((l, i) => {
        const r = read.lines[i]!;
        t.comment(
          `  ${l.role} [${l.lang}] "${l.expected}" -> "${l.read}": CER ${(l.cer * 100).toFixed(1)}%, ` +
            `conf ${l.confidence}, contrast P5 ${r.contrastP5}:1 (median ${r.contrastMedian}), clutter ${r.clutter}`,
        );
        t.ok(l.cer <= (l.lang === 'eng' ? 0.02 : 0.1), `${name} v${k} ${l.role} "${l.expected}" CER ${l.cer}`);
        t.ok(r.contrastP5 >= 4.5, `${name} v${k} ${l.role} contrast ${r.contrastP5}`);
      });
      t.equal(iou.maxIou, 0, `${name} v${k}: no text or panel over an object`);
      t.ok(read.pass, `${name} v${k}: readability pass`);
    }
  }
});

t.test('feed image is 1080x1350 and keeps the whole creative', async (t) => {
  const img = await decodeImage(fixture('coffee.png'));
  const plan = planPlacements(img, detectSaliency(img), TEXTS);
  const { png } = await renderCreative(img, plan.proposals[0]!, TEXTS, treatmentForVariant(1, img));
  const feed = await composeFeedImage(png);
  const meta = await sharp(feed).metadata();
  t.same([meta.width, meta.height, meta.format], [1080, 1350, 'jpeg']);
});

t.test('CPU time of each function on coffee.png', async (t) => {
  const bytes = fixture('coffee.png');
  // Wall time and process CPU time (user + system, all threads: libvips and
  // the tesseract workers included) per call, after one warm-up call.
  const time = async <T>(label: string, fn: () => Promise<T> | T, runs = 3): Promise<T> => {
    let result = await fn();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) result = await fn();
    const wall = (performance.now() - t0) / runs;
    const cpu = process.cpuUsage(c0);
    t.comment(`${label}: ${wall.toFixed(1)} ms wall, ${((cpu.user + cpu.system) / 1000 / runs).toFixed(1)} ms CPU`);
    return result;
  };
  const img = await time('decodeImage', () => decodeImage(bytes));
  const analysis = await time('analyzeImageHeuristic', () => analyzeImageHeuristic(img));
  const dets = await time('detectSaliency', () => detectSaliency(img));
  const plan = await time('planPlacements', () => planPlacements(img, dets, TEXTS));
  const treatment = treatmentForVariant(1, img, analysis);
  const { png, layout } = await time('renderCreative', () => renderCreative(img, plan.proposals[0]!, TEXTS, treatment));
  const creative = await decodeImage(png);
  const read = await time('readabilityEvaluate', () => readabilityEvaluate(creative, layout));
  const iou = await time('iouEvaluate', () => iouEvaluate(layout, dets));
  const judge = await time('judgeHeuristic', () => judgeHeuristic(creative, layout, dets));
  await time('composeFeedImage', () => composeFeedImage(png));
  const ocr = await createOcrEngine();
  t.teardown(() => ocr.close());
  const lines = await time('ocr.evaluate (warm workers)', () => ocr.evaluate(png, layout), 2);
  await time('scoreVariant', () => scoreVariant({ judge, ocr: lines, readability: read, iou }));
  t.pass('timed');
});

t.test('OCR engine: concurrent calls share the workers, a closed engine refuses work', async (t) => {
  const ocr = await createOcrEngine();
  const img = await decodeImage(fixture('chelsea.png'));
  const plan = planPlacements(img, detectSaliency(img), TEXTS);
  const a = await renderCreative(img, plan.proposals[0]!, TEXTS, treatmentForVariant(1, img));
  const other = { headline: 'Fresh beans every week', tagline: '매주 신선한 원두' };
  const plan2 = planPlacements(img, detectSaliency(img), other);
  const b = await renderCreative(img, plan2.proposals[0]!, other, treatmentForVariant(2, img));
  const [ra, rb] = await Promise.all([ocr.evaluate(a.png, a.layout), ocr.evaluate(b.png, b.layout)]);
  t.same(
    ra.map((l) => l.expected),
    a.layout.lines.map((l) => l.text),
  );
  t.same(
    rb.map((l) => l.expected),
    b.layout.lines.map((l) => l.text),
  );
  t.ok(
    [...ra, ...rb].every((l) => l.cer <= (l.lang === 'eng' ? 0.02 : 0.1)),
    JSON.stringify(rb.map((l) => [l.read, l.cer])),
  );
  await ocr.close();
  await ocr.close();
  await t.rejects(ocr.evaluate(a.png, a.layout), /closed/);
});

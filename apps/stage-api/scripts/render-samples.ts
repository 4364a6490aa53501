/**
 * Renders and evaluates creatives for every sample photo (saliency
 * detections, variants 1-3) into test-output/: the creative PNGs, the feed
 * JPEGs and report.json with every line's CER, contrast and overlap.
 *
 * Run from apps/stage-api:
 *   TS_NODE_TRANSPILE_ONLY=1 node --import "$(dirname "$(readlink -f ../../node_modules/tap)")/@tapjs/typescript/dist/esm/import.mjs" scripts/render-samples.ts [headline] [tagline]
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
} from '../src/vision/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = join(root, 'test', 'fixtures');
const out = join(root, 'test-output');
mkdirSync(out, { recursive: true });
const texts = {
  headline: process.argv[2] ?? 'Slow mornings, better coffee',
  tagline: process.argv[3] ?? '오늘의 한 잔, 천천히 즐기세요',
};

const ocr = await createOcrEngine();
const report: unknown[] = [];
try {
  for (const name of readdirSync(fixtures).filter((f) => /\.(png|jpe?g|webp)$/i.test(f))) {
    const img = await decodeImage(readFileSync(join(fixtures, name)));
    const analysis = analyzeImageHeuristic(img);
    const detections = detectSaliency(img);
    const plan = planPlacements(img, detections, texts);
    const base = name.replace(/\.\w+$/, '');
    for (const k of [1, 2, 3]) {
      const proposal = plan.proposals[chooseProposalForVariant(plan, k)]!;
      const treatment = treatmentForVariant(k, img, analysis);
      const { png, layout } = await renderCreative(img, proposal, texts, treatment);
      writeFileSync(join(out, `${base}-v${k}.png`), png);
      writeFileSync(join(out, `${base}-v${k}-feed.jpg`), await composeFeedImage(png));
      const creative = await decodeImage(png);
      const ocrLines = await ocr.evaluate(png, layout);
      const readability = readabilityEvaluate(creative, layout);
      const iou = iouEvaluate(layout, detections);
      const judge = judgeHeuristic(creative, layout, detections);
      const score = scoreVariant({ judge, ocr: ocrLines, readability, iou });
      report.push({
        photo: name,
        variant: k,
        anchor: proposal.anchor,
        treatment: treatment.name,
        ocrLines,
        readability,
        maxIou: iou.maxIou,
        judge,
        score,
      });
      console.log(
        `${name} v${k} ${treatment.name} @ ${proposal.anchor}: score ${score.score}, maxIoU ${iou.maxIou}, ` +
          ocrLines
            .map(
              (l, i) =>
                `${l.role}[${l.lang}] CER ${(l.cer * 100).toFixed(1)}% P5 ${readability.lines[i]!.contrastP5}:1`,
            )
            .join('; '),
      );
    }
  }
} finally {
  await ocr.close();
}
writeFileSync(join(out, 'report.json'), JSON.stringify(report, null, 2));
console.log(`wrote ${out}`);

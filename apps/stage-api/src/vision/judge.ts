/**
 * vlm_judge CPU fallback: a 0-10 score from measured features of the creative.
 *
 *   start at 10, then subtract
 *   - up to 4 for contrast: 4 * clamp((4.5 - worst line P5 contrast) / 3.5, 0, 1)
 *   - up to 3 for overlap: 3 * clamp(max text-over-object share / 0.1, 0, 1)
 *   - up to 1.5 for small text: headline below 4.5% of the shorter side
 *   - up to 1 for clutter: worst line clutter above the readability maximum
 *   - 2 when any line leaves the canvas
 *   - 0.5 when the text block covers more than 35% of the canvas
 */
import { iouEvaluate, READABILITY_THRESHOLDS, readabilityEvaluate } from './evaluate.js';
import type { CreativeLayout, Detection, Judgement, RasterImage } from './types.js';

export function judgeHeuristic(creative: RasterImage, layout: CreativeLayout, detections: Detection[]): Judgement {
  const problems: string[] = [];
  let score = 10;
  const read = readabilityEvaluate(creative, layout);
  const worst = read.lines.reduce((mn, l) => Math.min(mn, l.contrastP5), Number.POSITIVE_INFINITY);
  const minC = READABILITY_THRESHOLDS.minContrast;
  if (Number.isFinite(worst) && worst < minC) {
    score -= 4 * Math.min(1, (minC - worst) / 3.5);
    problems.push(`low contrast: ${worst.toFixed(2)}:1 at the 5th percentile (needs ${minC}:1)`);
  }
  const ov = iouEvaluate(layout, detections);
  const textPairs = ov.pairs.filter((p) => p.role !== 'underlay');
  const maxText = textPairs.reduce((mx, p) => Math.max(mx, p.ioText), 0);
  if (maxText > 0) {
    score -= 3 * Math.min(1, maxText / 0.1);
    problems.push(`text covers a detected object (${(maxText * 100).toFixed(1)}% of a text box)`);
  }
  const shorter = Math.min(creative.width, creative.height);
  const headline = layout.lines.find((l) => l.role === 'headline');
  const rel = headline ? headline.fontSize / shorter : 0;
  if (rel < 0.045) {
    score -= 1.5 * Math.min(1, (0.045 - rel) / 0.02);
    problems.push(`headline small: ${headline?.fontSize ?? 0}px on a ${shorter}px side`);
  }
  const worstClutter = read.lines.reduce((mx, l) => Math.max(mx, l.clutter), 0);
  if (worstClutter > READABILITY_THRESHOLDS.maxClutter) {
    score -= Math.min(1, (worstClutter - READABILITY_THRESHOLDS.maxClutter) / 0.1);
    problems.push(`busy background behind the text (edge density ${worstClutter.toFixed(2)})`);
  }
  const outside = layout.lines.some(
    (l) => l.box.x < 0 || l.box.y < 0 || l.box.x + l.box.w > layout.width || l.box.y + l.box.h > layout.height,
  );
  if (outside) {
    score -= 2;
    problems.push('text leaves the canvas');
  }
  const block = layout.underlayBox ?? null;
  if (block && (block.w * block.h) / (layout.width * layout.height) > 0.35) {
    score -= 0.5;
    problems.push('the text block covers more than a third of the creative');
  }
  score = Math.max(0, Math.min(10, Math.round(score * 10) / 10));
  const rationale =
    `Measured: worst-line contrast ${Number.isFinite(worst) ? worst.toFixed(2) : 'n/a'}:1 (5th percentile), ` +
    `text over objects ${(maxText * 100).toFixed(1)}%, headline ${(rel * 100).toFixed(1)}% of the shorter side, ` +
    `clutter ${worstClutter.toFixed(2)}; ` +
    (problems.length ? `${problems.length} problem(s).` : 'legible, clear of the subject, well sized.');
  return { score, problems, rationale };
}

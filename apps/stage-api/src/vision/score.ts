/**
 * The variant score used by instagram_feed_gen to pick the best creative
 * (0..100, higher is better):
 *
 *   score = 100 * ( 0.25 * judge.score / 10
 *                 + 0.25 * ocr
 *                 + 0.30 * readability
 *                 + 0.20 * (1 - min(1, maxIoText / 0.05)) )
 *   ocr         = mean over lines of (1 - min(1, CER)) * (0.6 + 0.4 * confidence / 100)
 *   readability = mean over lines of min(1, contrastP5 / 10) * (1 - min(1, clutter / 0.25))
 *
 * (Confidence and contrast up to 10:1 separate variants that all pass the
 * hard thresholds: the one with the most legibility margin wins.)
 *
 * A variant whose text covers an object (maxIoText > 0) or whose worst line
 * fails 4.5:1 is additionally capped at 50, so a clean variant always wins.
 */
import type { IouResult, Judgement, OcrLineResult, ReadabilityResult } from './types.js';

export function scoreVariant(evals: {
  judge: Judgement;
  ocr: OcrLineResult[];
  readability: ReadabilityResult;
  iou: IouResult;
}): { score: number; components: Record<string, number> } {
  const judge = clamp01((evals.judge?.score ?? 0) / 10);
  const ocrLines = evals.ocr ?? [];
  const cerOf = (l: OcrLineResult): number => (Number.isFinite(l.cer) ? Math.max(0, l.cer) : 1);
  const meanCer = ocrLines.length ? ocrLines.reduce((s, l) => s + cerOf(l), 0) / ocrLines.length : 1;
  const ocr = ocrLines.length
    ? ocrLines.reduce((s, l) => s + (1 - Math.min(1, cerOf(l))) * (0.6 + 0.4 * clamp01((l.confidence ?? 0) / 100)), 0) /
      ocrLines.length
    : 0;
  const lines = evals.readability?.lines ?? [];
  const readability = lines.length
    ? lines.reduce((s, l) => s + Math.min(1, l.contrastP5 / 10) * (1 - Math.min(1, l.clutter / 0.25)), 0) / lines.length
    : 0;
  const textOverlap = (evals.iou?.pairs ?? [])
    .filter((p) => p.role !== 'underlay')
    .reduce((mx, p) => Math.max(mx, p.ioText), 0);
  const overlap = 1 - Math.min(1, textOverlap / 0.05);
  let score = 100 * (0.25 * judge + 0.25 * ocr + 0.3 * readability + 0.2 * overlap);
  const worst = lines.reduce((mn, l) => Math.min(mn, l.contrastP5), Number.POSITIVE_INFINITY);
  const capped = textOverlap > 0 || !(worst >= 4.5);
  if (capped) score = Math.min(score, 50);
  return {
    score: Math.round(score * 100) / 100,
    components: {
      judge: round4(judge),
      ocr: round4(ocr),
      meanCer: round4(meanCer),
      readability: round4(readability),
      overlap: round4(overlap),
      maxTextOverObject: round4(textOverlap),
      capped: capped ? 1 : 0,
    },
  };
}

function clamp01(v: number): number {
  return Number.isFinite(v) ? Math.max(0, Math.min(1, v)) : 0;
}

function round4(v: number): number {
  return Math.round(v * 10000) / 10000;
}

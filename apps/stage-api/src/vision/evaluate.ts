/**
 * Measured evaluations of a rendered creative: WCAG contrast and clutter per
 * line (readability_eval) and text/object overlap (iou_eval).
 */
import { createCanvas } from '@napi-rs/canvas';
import { ensureFonts, fontSpec, measureLine } from './fonts.js';
import { clampInt, contrastRatio, EDGE_THRESHOLD, intersection, iou, parseColor, relativeLuminance } from './raster.js';
import type {
  CreativeLayout,
  Detection,
  IouPair,
  IouResult,
  RasterImage,
  ReadabilityLineResult,
  ReadabilityResult,
  RenderedLine,
} from './types.js';

export const READABILITY_THRESHOLDS = {
  /** WCAG 2.x AA for normal text. */
  minContrast: 4.5,
  /** Edge density (Sobel > 100) of the background under the line. */
  maxClutter: 0.12,
  /** Low percentile of the per-pixel contrast that must clear minContrast. */
  percentile: 5,
} as const;

/**
 * For each rendered line: the background pixels are the pixels inside the
 * line box that the glyphs do not touch (the line is drawn again with the same
 * font, size and weight at the same place to get its exact coverage, grown by
 * 1px for anti-aliasing), plus
 * a ring around the box (width 12% of the box height, at least 2px). The
 * per-pixel WCAG contrast between the text colour and each background pixel
 * is computed and its 5th percentile is what must clear 4.5:1. Clutter is the
 * Sobel edge density of those background pixels.
 */
export function readabilityEvaluate(creative: RasterImage, layout: CreativeLayout): ReadabilityResult {
  const t = READABILITY_THRESHOLDS;
  const W = creative.width;
  const H = creative.height;
  const d = creative.data;
  const lines: ReadabilityLineResult[] = layout.lines.map((line) => {
    const text = parseColor(line.color).rgb;
    const textLum = relativeLuminance(...text);
    const ring = Math.max(2, Math.round(line.box.h * 0.12));
    const bx0 = clampInt(Math.floor(line.box.x), 0, W);
    const by0 = clampInt(Math.floor(line.box.y), 0, H);
    const bx1 = clampInt(Math.ceil(line.box.x + line.box.w), 0, W);
    const by1 = clampInt(Math.ceil(line.box.y + line.box.h), 0, H);
    const ox0 = clampInt(bx0 - ring, 0, W);
    const oy0 = clampInt(by0 - ring, 0, H);
    const ox1 = clampInt(bx1 + ring, 0, W);
    const oy1 = clampInt(by1 + ring, 0, H);
    const ow = ox1 - ox0;
    const oh = oy1 - oy0;
    if (ow <= 2 || oh <= 2) {
      return { role: line.role, contrastP5: 1, contrastMedian: 1, clutter: 1, pass: false };
    }
    // Glyph mask: the lines drawn again with the same font at the same place
    // (every pixel their glyphs or anti-aliasing touch), grown by 1px; a
    // neighbouring line reaching into the ring is text too, not background.
    const glyph = glyphMask(layout.lines, ox0, oy0, ow, oh);
    const contrasts: number[] = [];
    const grey = new Float32Array(ow * oh);
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const i = ((y + oy0) * W + (x + ox0)) * 4;
        grey[y * ow + x] = 0.299 * d[i]! + 0.587 * d[i + 1]! + 0.114 * d[i + 2]!;
      }
    }
    let edges = 0;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const gx = x + ox0;
        const gy = y + oy0;
        if (glyph[y * ow + x]) continue;
        const i = (gy * W + gx) * 4;
        contrasts.push(contrastRatio(textLum, relativeLuminance(d[i]!, d[i + 1]!, d[i + 2]!)));
        if (x > 0 && y > 0 && x < ow - 1 && y < oh - 1) {
          const k = y * ow + x;
          // Only count edges between background pixels (glyph edges are not clutter).
          if (
            !glyph[k - 1] &&
            !glyph[k + 1] &&
            !glyph[k - ow] &&
            !glyph[k + ow] &&
            !glyph[k - ow - 1] &&
            !glyph[k + ow + 1]
          ) {
            const sx =
              grey[k - ow + 1]! +
              2 * grey[k + 1]! +
              grey[k + ow + 1]! -
              grey[k - ow - 1]! -
              2 * grey[k - 1]! -
              grey[k + ow - 1]!;
            const sy =
              grey[k + ow - 1]! +
              2 * grey[k + ow]! +
              grey[k + ow + 1]! -
              grey[k - ow - 1]! -
              2 * grey[k - ow]! -
              grey[k - ow + 1]!;
            if (Math.sqrt(sx * sx + sy * sy) > EDGE_THRESHOLD) edges++;
          }
        }
      }
    }
    if (contrasts.length === 0) return { role: line.role, contrastP5: 1, contrastMedian: 1, clutter: 1, pass: false };
    contrasts.sort((a, b) => a - b);
    const pick = (q: number): number =>
      contrasts[Math.min(contrasts.length - 1, Math.max(0, Math.ceil(q * contrasts.length) - 1))]!;
    const p5 = pick(t.percentile / 100);
    const med = pick(0.5);
    const clutter = edges / contrasts.length;
    return {
      role: line.role,
      contrastP5: round3(p5),
      contrastMedian: round3(med),
      clutter: round3(clutter),
      pass: p5 >= t.minContrast && clutter <= t.maxClutter,
    };
  });
  return {
    lines,
    thresholds: { minContrast: t.minContrast, maxClutter: t.maxClutter, percentile: t.percentile },
    pass: lines.length > 0 && lines.every((l) => l.pass),
  };
}

/** Coverage of the lines' glyphs in the window (ox0, oy0, ow, oh), dilated by 1px. */
function glyphMask(lines: RenderedLine[], ox0: number, oy0: number, ow: number, oh: number): Uint8Array {
  ensureFonts();
  const canvas = createCanvas(ow, oh);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#000';
  for (const line of lines) {
    if (intersection(line.box, { x: ox0, y: oy0, w: ow, h: oh }) <= 0) continue;
    const m = measureLine(line.text, line.fontSize, line.fontWeight);
    ctx.font = fontSpec(line.fontSize, line.fontWeight);
    ctx.fillText(line.text, line.box.x + m.left - ox0, line.box.y + m.ascent - oy0);
  }
  const alpha = ctx.getImageData(0, 0, ow, oh).data;
  const mask = new Uint8Array(ow * oh);
  for (let i = 0; i < ow * oh; i++) if (alpha[i * 4 + 3]! > 0) mask[i] = 1;
  return dilateMask(mask, ow, oh, 1);
}

function dilateMask(mask: Uint8Array, w: number, h: number, r: number): Uint8Array {
  const tmp = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      for (let dx = -r; dx <= r; dx++) {
        const xx = x + dx;
        if (xx >= 0 && xx < w) tmp[y * w + xx] = 1;
      }
    }
  }
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!tmp[y * w + x]) continue;
      for (let dy = -r; dy <= r; dy++) {
        const yy = y + dy;
        if (yy >= 0 && yy < h) out[yy * w + x] = 1;
      }
    }
  }
  return out;
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** IoU and intersection-over-text-area of every line box (and the underlay) with every detection. */
export function iouEvaluate(layout: CreativeLayout, detections: Detection[]): IouResult {
  const pairs: IouPair[] = [];
  layout.lines.forEach((line, idx) => {
    for (const det of detections) {
      const inter = intersection(line.box, det.box);
      const a = line.box.w * line.box.h;
      pairs.push({
        role: line.role,
        line: idx,
        label: det.label,
        iou: round4(iou(line.box, det.box)),
        ioText: round4(a > 0 ? inter / a : 0),
      });
    }
  });
  if (layout.underlayBox) {
    const u = layout.underlayBox;
    for (const det of detections) {
      const a = u.w * u.h;
      pairs.push({
        role: 'underlay',
        line: -1,
        label: det.label,
        iou: round4(iou(u, det.box)),
        ioText: round4(a > 0 ? intersection(u, det.box) / a : 0),
      });
    }
  }
  return {
    pairs,
    maxIou: pairs.reduce((mx, p) => Math.max(mx, p.iou), 0),
    maxIoText: pairs.reduce((mx, p) => Math.max(mx, p.ioText), 0),
  };
}

function round4(v: number): number {
  return Math.round(v * 10000) / 10000;
}

/**
 * The planner's scoring (../planner.ts): the hard rule and the score of every
 * candidate. In the photo, a panel that leaves the image or overlaps an
 * object's keep-out zone is rejected with the reason; the others are scored
 * on a downscaled copy:
 *
 *   score = 0.30 * (1 - clutter / 0.25)      edge density under the panel
 *         + 0.20 * min(1, contrast / 7)      best of white/near-black text vs the 5th-percentile pixel
 *         + 0.20 * breathing room            distance to the nearest object, edges balanced
 *         + 0.30 * min(1, size / 0.085)      headline size relative to the shorter image side
 *         - 0.50 * max(0, panelArea - 0.28)  panels that swallow the photo
 *         - 0.60 * max(0, panelWidth - 0.65) banner-wide panels (a compact block reads better)
 *
 * Caption bands score 0.8x of a clean panel (0.78x the left-aligned one); the
 * last resort 0.1.
 */
import { contrastRatio, downscale, EDGE_THRESHOLD, intersection, relativeLuminance, sobel, toGrey } from '../raster.js';
import type { Box, RasterImage } from '../types.js';
import type { BandSide, Candidate, Scene } from './candidates.js';

const PLAN_SIDE = 384;

/** Clutter and contrast under a box, measured on a downscaled copy of the image. */
export interface Measurements {
  /** Fraction of edge pixels under the box. */
  clutterOf(b: Box): number;
  /** Best contrast of white or near-black text against the box's extreme pixels. */
  contrastOf(b: Box): number;
}

/** Downscaled measurements: edge map (integral image) and luminance. */
export function measure(img: RasterImage): Measurements {
  const { image: small, scale } = downscale(img, PLAN_SIDE);
  const grey = toGrey(small);
  const grad = sobel(grey);
  const sw = small.width;
  const sh = small.height;
  const integral = new Float64Array((sw + 1) * (sh + 1));
  for (let y = 0; y < sh; y++) {
    let row = 0;
    for (let x = 0; x < sw; x++) {
      row += grad[y * sw + x]! > EDGE_THRESHOLD ? 1 : 0;
      integral[(y + 1) * (sw + 1) + x + 1] = integral[y * (sw + 1) + x + 1]! + row;
    }
  }
  const lumSmall = new Float32Array(sw * sh);
  for (let i = 0; i < sw * sh; i++) {
    lumSmall[i] = relativeLuminance(small.data[i * 4]!, small.data[i * 4 + 1]!, small.data[i * 4 + 2]!);
  }
  const clutterOf = (b: Box): number => {
    const x0 = Math.max(0, Math.floor(b.x * scale));
    const y0 = Math.max(0, Math.floor(b.y * scale));
    const x1 = Math.min(sw, Math.ceil((b.x + b.w) * scale));
    const y1 = Math.min(sh, Math.ceil((b.y + b.h) * scale));
    const n = (x1 - x0) * (y1 - y0);
    if (n <= 0) return 0;
    const s =
      integral[y1 * (sw + 1) + x1]! -
      integral[y0 * (sw + 1) + x1]! -
      integral[y1 * (sw + 1) + x0]! +
      integral[y0 * (sw + 1) + x0]!;
    return s / n;
  };
  const contrastOf = (b: Box): number => {
    const x0 = Math.max(0, Math.floor(b.x * scale));
    const y0 = Math.max(0, Math.floor(b.y * scale));
    const x1 = Math.min(sw, Math.ceil((b.x + b.w) * scale));
    const y1 = Math.min(sh, Math.ceil((b.y + b.h) * scale));
    const vals: number[] = [];
    const step = Math.max(1, Math.floor(Math.sqrt(((x1 - x0) * (y1 - y0)) / 1500)));
    for (let y = y0; y < y1; y += step) for (let x = x0; x < x1; x += step) vals.push(lumSmall[y * sw + x]!);
    if (vals.length === 0) return 1;
    vals.sort((a, b) => a - b);
    const lo = vals[Math.floor(vals.length * 0.05)]!;
    const hi = vals[Math.min(vals.length - 1, Math.floor(vals.length * 0.95))]!;
    // White text is limited by the brightest pixels, near-black text by the darkest.
    const white = contrastRatio(1, hi);
    const black = contrastRatio(relativeLuminance(20, 20, 20), lo);
    return Math.max(white, black);
  };
  return { clutterOf, contrastOf };
}

/** Hard rules and scores for in-photo candidates (sets `rejected`, or `score` and its components). */
export function scoreInPhoto(cands: Candidate[], scene: Scene, measured: Measurements, objMargin: number): void {
  const { W, H, m, objects } = scene;
  for (const c of cands) {
    const r = c.region;
    if (r.x < 0 || r.y < 0 || r.x + r.w > W || r.y + r.h > H) {
      c.rejected = 'out of bounds: the panel does not fit inside the image';
      continue;
    }
    const hit = objects.find((o) => intersection(r, o.zone) > 0);
    if (hit) {
      c.rejected = `overlaps ${hit.det.label} (score ${hit.det.score}) dilated by ${objMargin}px`;
      continue;
    }
    const clutter = measured.clutterOf(r);
    const contrast = measured.contrastOf(r);
    const areaFrac = (r.w * r.h) / (W * H);
    let room = 1;
    for (const o of objects) room = Math.min(room, gapBetween(r, o.zone) / (0.1 * m));
    const edgeGaps = [r.x, r.y, W - r.x - r.w, H - r.y - r.h];
    const minEdge = Math.min(...edgeGaps);
    const balance = minEdge >= 0.03 * m ? 1 : minEdge / (0.03 * m);
    const size = Math.min(1, c.components['headlineSize']! / (0.085 * m));
    const breathing = 0.6 * Math.max(0, Math.min(1, room)) + 0.4 * balance;
    const clutterTerm = Math.max(0, 1 - clutter / 0.25);
    const contrastTerm = Math.min(1, contrast / 7);
    const widthFrac = r.w / W;
    c.score =
      0.3 * clutterTerm +
      0.2 * contrastTerm +
      0.2 * breathing +
      0.3 * size -
      0.5 * Math.max(0, areaFrac - 0.28) -
      0.6 * Math.max(0, widthFrac - 0.65);
    Object.assign(c.components, {
      clutter: round4(clutter),
      contrast: round4(contrast),
      breathing: round4(breathing),
      size: round4(size),
      areaFraction: round4(areaFrac),
    });
  }
}

/** A caption band: a solid band, so clutter 0 and full contrast; in-photo placements are preferred. */
export function scoreBand(c: Candidate, side: BandSide, hs: number, m: number): void {
  const size = Math.min(1, hs / (0.085 * m));
  // Centred caption first, the left-aligned one as the alternative.
  c.score = (side === 'band-bottom-left' ? 0.78 : 0.8) * (0.3 + 0.2 + 0.2 + 0.3 * size);
  Object.assign(c.components, { clutter: 0, contrast: 21, breathing: 1, size: round4(size), band: 1 });
}

/** The last resort scores below everything else. */
export function scoreLastResort(c: Candidate, size: number, m: number): void {
  c.score = 0.1;
  Object.assign(c.components, {
    clutter: 0,
    contrast: 21,
    breathing: 1,
    size: round4(size / (0.085 * m)),
    band: 1,
  });
}

function gapBetween(a: Box, b: Box): number {
  const dx = Math.max(0, Math.max(a.x, b.x) - Math.min(a.x + a.w, b.x + b.w));
  const dy = Math.max(0, Math.max(a.y, b.y) - Math.min(a.y + a.h, b.y + b.h));
  return Math.hypot(dx, dy);
}

export function round4(v: number): number {
  return Math.round(v * 10000) / 10000;
}

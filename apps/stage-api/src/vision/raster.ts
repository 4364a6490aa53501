/**
 * Small pixel helpers shared by the analysis, saliency, planner and evaluation
 * code. Everything works on plain typed arrays so it can run in a worker thread.
 */
import type { Box, RasterImage } from './types.js';

/** A single-channel float image. */
export interface GreyImage {
  width: number;
  height: number;
  data: Float32Array;
}

export function assertRaster(img: RasterImage): void {
  if (
    !img ||
    !Number.isInteger(img.width) ||
    !Number.isInteger(img.height) ||
    img.width <= 0 ||
    img.height <= 0 ||
    !img.data ||
    img.data.length !== img.width * img.height * 4
  ) {
    throw new TypeError('expected a RasterImage with width * height * 4 bytes of RGBA data');
  }
}

/**
 * Area-averaging downscale so that the longest side is at most `maxSide`
 * (never upscales). Returns the input itself when it is already small enough.
 */
export function downscale(img: RasterImage, maxSide: number): { image: RasterImage; scale: number } {
  assertRaster(img);
  const longest = Math.max(img.width, img.height);
  if (longest <= maxSide) return { image: img, scale: 1 };
  const scale = maxSide / longest;
  const w = Math.max(1, Math.round(img.width * scale));
  const h = Math.max(1, Math.round(img.height * scale));
  const out = new Uint8Array(w * h * 4);
  const sx = img.width / w;
  const sy = img.height / h;
  // Area average, sampling at most 4x4 pixels per output pixel (evenly spread
  // over its source block) so that a 12 MP photo downscales in a few ms.
  for (let y = 0; y < h; y++) {
    const y0 = Math.floor(y * sy);
    const y1 = Math.max(y0 + 1, Math.min(img.height, Math.floor((y + 1) * sy)));
    const ystep = Math.max(1, Math.floor((y1 - y0) / 4));
    for (let x = 0; x < w; x++) {
      const x0 = Math.floor(x * sx);
      const x1 = Math.max(x0 + 1, Math.min(img.width, Math.floor((x + 1) * sx)));
      const xstep = Math.max(1, Math.floor((x1 - x0) / 4));
      let r = 0;
      let g = 0;
      let b = 0;
      let a = 0;
      let n = 0;
      for (let yy = y0 + (ystep >> 1); yy < y1; yy += ystep) {
        for (let xx = x0 + (xstep >> 1); xx < x1; xx += xstep) {
          const i = (yy * img.width + xx) * 4;
          r += img.data[i]!;
          g += img.data[i + 1]!;
          b += img.data[i + 2]!;
          a += img.data[i + 3]!;
          n++;
        }
      }
      const o = (y * w + x) * 4;
      out[o] = Math.round(r / n);
      out[o + 1] = Math.round(g / n);
      out[o + 2] = Math.round(b / n);
      out[o + 3] = Math.round(a / n);
    }
  }
  return { image: { width: w, height: h, data: out }, scale: w / img.width };
}

/** Rec. 601 luma, 0..255. */
export function toGrey(img: RasterImage): GreyImage {
  const n = img.width * img.height;
  const data = new Float32Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    data[i] = 0.299 * img.data[j]! + 0.587 * img.data[j + 1]! + 0.114 * img.data[j + 2]!;
  }
  return { width: img.width, height: img.height, data };
}

/** Sobel gradient magnitude (0..~1443 for 0..255 input); borders are 0. */
export function sobel(g: GreyImage): Float32Array {
  const { width: w, height: h, data: d } = g;
  const out = new Float32Array(w * h);
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const i = y * w + x;
      const gx = d[i - w + 1]! + 2 * d[i + 1]! + d[i + w + 1]! - d[i - w - 1]! - 2 * d[i - 1]! - d[i + w - 1]!;
      const gy = d[i + w - 1]! + 2 * d[i + w]! + d[i + w + 1]! - d[i - w - 1]! - 2 * d[i - w]! - d[i - w + 1]!;
      out[i] = Math.sqrt(gx * gx + gy * gy);
    }
  }
  return out;
}

/** Sobel magnitude above which a pixel counts as an edge (clutter measures). */
export const EDGE_THRESHOLD = 100;

/** Fraction of pixels inside `box` (coordinates of the gradient image) whose gradient exceeds the edge threshold. */
export function edgeDensity(grad: Float32Array, width: number, height: number, box: Box): number {
  const x0 = clampInt(Math.floor(box.x), 0, width);
  const y0 = clampInt(Math.floor(box.y), 0, height);
  const x1 = clampInt(Math.ceil(box.x + box.w), 0, width);
  const y1 = clampInt(Math.ceil(box.y + box.h), 0, height);
  let n = 0;
  let e = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      n++;
      if (grad[y * width + x]! > EDGE_THRESHOLD) e++;
    }
  }
  return n === 0 ? 0 : e / n;
}

export function clampInt(v: number, lo: number, hi: number): number {
  return v < lo ? lo : Math.min(v, hi);
}

/** Value at quantile q (0..1) of the values, nearest-rank on a sorted copy. */
export function quantile(values: ArrayLike<number>, q: number): number {
  const n = values.length;
  if (n === 0) return Number.NaN;
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  const idx = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  return sorted[idx]!;
}

// ---------- colour ----------

export type Rgb = [number, number, number];

export function parseColor(css: string): { rgb: Rgb; alpha: number } {
  const s = css.trim().toLowerCase();
  let m = /^#([0-9a-f]{3})$/.exec(s);
  if (m) {
    const h = m[1]!;
    return { rgb: [0, 1, 2].map((i) => Number.parseInt(h[i]! + h[i]!, 16)) as Rgb, alpha: 1 };
  }
  m = /^#([0-9a-f]{6})([0-9a-f]{2})?$/.exec(s);
  if (m) {
    const h = m[1]!;
    const rgb = [0, 2, 4].map((i) => Number.parseInt(h.slice(i, i + 2), 16)) as Rgb;
    return { rgb, alpha: m[2] ? Number.parseInt(m[2], 16) / 255 : 1 };
  }
  m = /^rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)$/.exec(s);
  if (m) {
    return {
      rgb: [Number(m[1]), Number(m[2]), Number(m[3])].map((v) => clampInt(Math.round(v), 0, 255)) as Rgb,
      alpha: m[4] === undefined ? 1 : Math.min(1, Math.max(0, Number(m[4]))),
    };
  }
  throw new TypeError(`unsupported colour: ${css}`);
}

export function toHex(rgb: Rgb): string {
  return `#${rgb.map((v) => clampInt(Math.round(v), 0, 255).toString(16).padStart(2, '0')).join('')}`;
}

export function rgba(rgb: Rgb, alpha: number): string {
  return `rgba(${rgb.map((v) => clampInt(Math.round(v), 0, 255)).join(',')},${Math.round(alpha * 1000) / 1000})`;
}

const LIN = new Float64Array(256);
for (let i = 0; i < 256; i++) {
  const c = i / 255;
  LIN[i] = c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

/** WCAG 2.x relative luminance of an sRGB colour (0..1). */
export function relativeLuminance(r: number, g: number, b: number): number {
  return 0.2126 * LIN[r | 0]! + 0.7152 * LIN[g | 0]! + 0.0722 * LIN[b | 0]!;
}

/** WCAG 2.x contrast ratio between two relative luminances (1..21). */
export function contrastRatio(l1: number, l2: number): number {
  const hi = Math.max(l1, l2);
  const lo = Math.min(l1, l2);
  return (hi + 0.05) / (lo + 0.05);
}

export function contrastOfColors(a: Rgb, b: Rgb): number {
  return contrastRatio(relativeLuminance(...a), relativeLuminance(...b));
}

/** RGB to HSL (h in degrees, s and l in 0..1). */
export function rgbToHsl([r, g, b]: Rgb): [number, number, number] {
  const rn = r / 255;
  const gn = g / 255;
  const bn = b / 255;
  const max = Math.max(rn, gn, bn);
  const min = Math.min(rn, gn, bn);
  const l = (max + min) / 2;
  if (max === min) return [0, 0, l];
  const d = max - min;
  const s = l > 0.5 ? d / (2 - max - min) : d / (max + min);
  let h: number;
  if (max === rn) h = (gn - bn) / d + (gn < bn ? 6 : 0);
  else if (max === gn) h = (bn - rn) / d + 2;
  else h = (rn - gn) / d + 4;
  return [h * 60, s, l];
}

export function hslToRgb(h: number, s: number, l: number): Rgb {
  const hue = (((h % 360) + 360) % 360) / 360;
  if (s === 0) return [l * 255, l * 255, l * 255];
  const q = l < 0.5 ? l * (1 + s) : l + s - l * s;
  const p = 2 * l - q;
  const f = (t: number): number => {
    let tt = t;
    if (tt < 0) tt += 1;
    if (tt > 1) tt -= 1;
    if (tt < 1 / 6) return p + (q - p) * 6 * tt;
    if (tt < 1 / 2) return q;
    if (tt < 2 / 3) return p + (q - p) * (2 / 3 - tt) * 6;
    return p;
  };
  return [f(hue + 1 / 3) * 255, f(hue) * 255, f(hue - 1 / 3) * 255];
}

/** A plain English name for a colour (for descriptions). */
export function colorName(rgb: Rgb): string {
  const [h, s, l] = rgbToHsl(rgb);
  if (l < 0.12) return 'black';
  if (l > 0.9 && s < 0.5) return 'white';
  if (s < 0.12) return l < 0.4 ? 'dark grey' : l > 0.7 ? 'light grey' : 'grey';
  if ((h < 45 || h >= 345) && l < 0.45 && s < 0.75) return h < 15 || h >= 345 ? 'maroon' : 'brown';
  if (h >= 20 && h < 50 && l >= 0.45 && s < 0.5) return 'beige';
  if (h < 15 || h >= 345) return l > 0.7 ? 'pink' : 'red';
  if (h < 40) return 'orange';
  if (h < 65) return l < 0.35 ? 'olive' : 'yellow';
  if (h < 160) return l < 0.3 ? 'dark green' : 'green';
  if (h < 195) return 'teal';
  if (h < 250) return l < 0.3 ? 'navy' : 'blue';
  if (h < 290) return 'purple';
  return l > 0.65 ? 'pink' : 'magenta';
}

// ---------- boxes ----------

export function area(b: Box): number {
  return Math.max(0, b.w) * Math.max(0, b.h);
}

export function intersection(a: Box, b: Box): number {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0;
}

export function iou(a: Box, b: Box): number {
  const inter = intersection(a, b);
  const union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

export function dilate(b: Box, margin: number): Box {
  return { x: b.x - margin, y: b.y - margin, w: b.w + 2 * margin, h: b.h + 2 * margin };
}

export function clipBox(b: Box, width: number, height: number): Box {
  const x0 = Math.max(0, Math.min(width, b.x));
  const y0 = Math.max(0, Math.min(height, b.y));
  const x1 = Math.max(0, Math.min(width, b.x + b.w));
  const y1 = Math.max(0, Math.min(height, b.y + b.h));
  return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
}

export function unionBox(boxes: Box[]): Box {
  let x0 = Number.POSITIVE_INFINITY;
  let y0 = Number.POSITIVE_INFINITY;
  let x1 = Number.NEGATIVE_INFINITY;
  let y1 = Number.NEGATIVE_INFINITY;
  for (const b of boxes) {
    x0 = Math.min(x0, b.x);
    y0 = Math.min(y0, b.y);
    x1 = Math.max(x1, b.x + b.w);
    y1 = Math.max(y1, b.y + b.h);
  }
  return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
}

export function roundBox(b: Box): Box {
  return {
    x: Math.round(b.x * 100) / 100,
    y: Math.round(b.y * 100) / 100,
    w: Math.round(b.w * 100) / 100,
    h: Math.round(b.h * 100) / 100,
  };
}

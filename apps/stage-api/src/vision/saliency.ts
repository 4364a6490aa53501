/**
 * yolo_detect CPU fallback: saliency-based subject localisation.
 *
 * Two published, training-free saliency maps are combined on a small copy of
 * the image:
 * - spectral residual (Hou & Zhang, CVPR 2007) on a 64x64 grey image: the
 *   log-amplitude spectrum minus its local average, transformed back with the
 *   original phase, squared and blurred; it marks "unexpected" structure;
 * - frequency-tuned saliency (Achanta et al., CVPR 2009) on a 128px copy: the
 *   distance in CIE Lab between each blurred pixel and the image's mean
 *   colour; it fills whole objects that differ in colour from the scene.
 * - a boundary (background) prior in the spirit of Zhu et al. (CVPR 2014):
 *   the Lab distance of each pixel to the nearest colour cluster of the image
 *   border, which is mostly background in a product shot.
 * The normalised maps are averaged, weighted by a mild centre prior (product
 * photos put the subject near the centre), thresholded with hysteresis (Otsu
 * for the seeds, a lower level for growth), closed, and the strongest
 * connected regions become 1-3 boxes mapped back to image pixels.
 * Known limit: thin structures narrower than ~1/60 of the image (a rocket's
 * nose cone) are blurred away; the planner's dilation margin covers them.
 */
import { downscale } from './raster.js';
import type { Detection, RasterImage } from './types.js';

const SR_SIZE = 64;
const FT_SIDE = 128;
/** Weights of the three maps (boundary contrast, frequency-tuned, spectral residual). */
const W_BG = 0.5;
const W_FT = 0.2;
const W_SR = 0.3;
/** Hysteresis low threshold: max(mean * LOW_MEAN, high * LOW_FRAC). */
const LOW_MEAN = 1.1;
const LOW_FRAC = 0.7;
/** Secondary regions must carry this share of the main region's mass. */
const MASS_RATIO = 0.15;

/** Saliency map on a FT_SIDE copy of the image, values 0..1. */
export function saliencyMap(img: RasterImage): { width: number; height: number; data: Float32Array } {
  const { image: small } = downscale(img, FT_SIDE);
  const w = small.width;
  const h = small.height;
  const ft = frequencyTuned(small);
  const bg = boundaryContrast(small);
  const sr = spectralResidual(small);
  // Spectral residual map resampled from SR_SIZE x SR_SIZE to w x h.
  const out = new Float32Array(w * h);
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  const sigX = 0.5 * w;
  const sigY = 0.5 * h;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const sx = Math.min(SR_SIZE - 1, Math.floor(((x + 0.5) * SR_SIZE) / w));
      const sy = Math.min(SR_SIZE - 1, Math.floor(((y + 0.5) * SR_SIZE) / h));
      const prior = Math.exp(-(((x - cx) / sigX) ** 2 + ((y - cy) / sigY) ** 2) / 2);
      out[y * w + x] =
        (W_BG * bg[y * w + x]! + W_FT * ft[y * w + x]! + W_SR * sr[sy * SR_SIZE + sx]!) * (0.4 + 0.6 * prior);
    }
  }
  normalise(out);
  return { width: w, height: h, data: out };
}

/**
 * Salient subject boxes (1-3), label 'salient_object', classId -1, score =
 * the region's share of the total saliency mass above the threshold.
 */
export function detectSaliency(img: RasterImage): Detection[] {
  const map = saliencyMap(img);
  const { width: w, height: h, data } = map;
  let mean = 0;
  for (const v of data) mean += v;
  mean /= data.length;
  const thr = Math.max(otsu(data), Math.min(0.9, mean * 1.5));
  // Hysteresis: regions seeded above the threshold grow into connected pixels
  // above a lower one, so thin or less contrasted parts of the subject (a
  // rocket's nose, a face above a bright suit) stay attached to it.
  const low = Math.max(mean * LOW_MEAN, thr * LOW_FRAC);
  const mask = hysteresis(data, w, h, thr, low);
  const closed = close(mask, w, h, 2);
  const comps = components(closed, data, w, h);
  const total = comps.reduce((s, c) => s + c.mass, 0);
  const minArea = 0.004 * w * h;
  let kept = comps.filter((c) => c.area >= minArea).sort((a, b) => b.mass - a.mass);
  if (kept.length === 0 && comps.length > 0) kept = [comps.sort((a, b) => b.mass - a.mass)[0]!];
  // Keep the main region and regions carrying at least 15% of its mass.
  const main = kept[0];
  if (!main) {
    return [
      {
        label: 'salient_object',
        classId: -1,
        score: 0,
        box: { x: img.width * 0.25, y: img.height * 0.25, w: img.width * 0.5, h: img.height * 0.5 },
      },
    ];
  }
  let boxes = kept.filter((c) => c.mass >= MASS_RATIO * main.mass).slice(0, 6);
  // Merge regions whose boxes touch or nearly touch (one object split by the threshold).
  const gap = 0.04 * Math.max(w, h);
  let merged = true;
  while (merged) {
    merged = false;
    outer: for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i]!;
        const b = boxes[j]!;
        if (a.x0 - gap <= b.x1 && b.x0 - gap <= a.x1 && a.y0 - gap <= b.y1 && b.y0 - gap <= a.y1) {
          boxes[i] = {
            x0: Math.min(a.x0, b.x0),
            y0: Math.min(a.y0, b.y0),
            x1: Math.max(a.x1, b.x1),
            y1: Math.max(a.y1, b.y1),
            area: a.area + b.area,
            mass: a.mass + b.mass,
          };
          boxes.splice(j, 1);
          merged = true;
          break outer;
        }
      }
    }
  }
  boxes = boxes.sort((a, b) => b.mass - a.mass).slice(0, 3);
  const sx = img.width / w;
  const sy = img.height / h;
  return boxes.map((c) => {
    const x0 = Math.max(0, c.x0 * sx);
    const y0 = Math.max(0, c.y0 * sy);
    const x1 = Math.min(img.width, (c.x1 + 1) * sx);
    const y1 = Math.min(img.height, (c.y1 + 1) * sy);
    return {
      label: 'salient_object',
      classId: -1,
      score: Math.round((total > 0 ? c.mass / total : 0) * 1000) / 1000,
      box: { x: round2(x0), y: round2(y0), w: round2(x1 - x0), h: round2(y1 - y0) },
    };
  });
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

function normalise(a: Float32Array): void {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of a) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const r = hi - lo || 1;
  for (let i = 0; i < a.length; i++) a[i] = (a[i]! - lo) / r;
}

// ---------- frequency-tuned saliency ----------

function srgbToLab(r: number, g: number, b: number): [number, number, number] {
  const lin = (c: number): number => {
    const v = c / 255;
    return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  const R = lin(r);
  const G = lin(g);
  const B = lin(b);
  const X = (0.4124 * R + 0.3576 * G + 0.1805 * B) / 0.95047;
  const Y = 0.2126 * R + 0.7152 * G + 0.0722 * B;
  const Z = (0.0193 * R + 0.1192 * G + 0.9505 * B) / 1.08883;
  const f = (t: number): number => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
  const fx = f(X);
  const fy = f(Y);
  const fz = f(Z);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

function frequencyTuned(img: RasterImage): Float32Array {
  const w = img.width;
  const h = img.height;
  const n = w * h;
  const L = new Float32Array(n);
  const A = new Float32Array(n);
  const B = new Float32Array(n);
  let mL = 0;
  let mA = 0;
  let mB = 0;
  for (let i = 0; i < n; i++) {
    const [l, a, b] = srgbToLab(img.data[i * 4]!, img.data[i * 4 + 1]!, img.data[i * 4 + 2]!);
    L[i] = l;
    A[i] = a;
    B[i] = b;
    mL += l;
    mA += a;
    mB += b;
  }
  mL /= n;
  mA /= n;
  mB /= n;
  const sigma = Math.max(1, Math.max(w, h) / 64);
  const bl = blur(L, w, h, sigma);
  const ba = blur(A, w, h, sigma);
  const bb = blur(B, w, h, sigma);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt((bl[i]! - mL) ** 2 + (ba[i]! - mA) ** 2 + (bb[i]! - mB) ** 2);
  normalise(out);
  return out;
}

// ---------- boundary (background) contrast ----------

/**
 * Background prior: pixels on the image border are mostly background, so the
 * Lab distance of each (blurred) pixel to the nearest border colour cluster
 * is high on the subject and low on the scene around it.
 */
function boundaryContrast(img: RasterImage): Float32Array {
  const w = img.width;
  const h = img.height;
  const n = w * h;
  const lab: Array<[number, number, number]> = new Array(n);
  const L = new Float32Array(n);
  const A = new Float32Array(n);
  const B = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = srgbToLab(img.data[i * 4]!, img.data[i * 4 + 1]!, img.data[i * 4 + 2]!);
    L[i] = v[0];
    A[i] = v[1];
    B[i] = v[2];
  }
  const sigma = Math.max(1, Math.max(w, h) / 80);
  const bl = blur(L, w, h, sigma);
  const ba = blur(A, w, h, sigma);
  const bb = blur(B, w, h, sigma);
  for (let i = 0; i < n; i++) lab[i] = [bl[i]!, ba[i]!, bb[i]!];
  const ring = Math.max(2, Math.round(0.05 * Math.min(w, h)));
  const border: Array<[number, number, number]> = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (x < ring || y < ring || x >= w - ring || y >= h - ring) border.push(lab[y * w + x]!);
    }
  }
  // k-means (k = 8) on border colours, initialised on evenly spaced border samples.
  const k = 8;
  let centres = Array.from({ length: k }, (_, j) => border[Math.floor(((j + 0.5) * border.length) / k)]!.slice());
  const assign = new Int32Array(border.length);
  for (let iter = 0; iter < 6; iter++) {
    for (let i = 0; i < border.length; i++) {
      const p = border[i]!;
      let bi = 0;
      let bd = Number.POSITIVE_INFINITY;
      for (let j = 0; j < k; j++) {
        const c = centres[j]!;
        const d = (p[0] - c[0]!) ** 2 + (p[1] - c[1]!) ** 2 + (p[2] - c[2]!) ** 2;
        if (d < bd) {
          bd = d;
          bi = j;
        }
      }
      assign[i] = bi;
    }
    const sums = centres.map(() => [0, 0, 0, 0]);
    for (let i = 0; i < border.length; i++) {
      const s = sums[assign[i]!]!;
      const p = border[i]!;
      s[0]! += p[0];
      s[1]! += p[1];
      s[2]! += p[2];
      s[3]! += 1;
    }
    centres = centres.map((c, j) => {
      const s = sums[j]!;
      return s[3]! > 0 ? [s[0]! / s[3]!, s[1]! / s[3]!, s[2]! / s[3]!] : c;
    });
  }
  const counts = new Float64Array(k);
  for (let i = 0; i < border.length; i++) counts[assign[i]!]! += 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const p = lab[i]!;
    let bd = Number.POSITIVE_INFINITY;
    for (let j = 0; j < k; j++) {
      // Tiny clusters (a few border pixels of the subject itself) count less as background.
      if (counts[j]! < 0.03 * border.length) continue;
      const c = centres[j]!;
      const d = Math.sqrt((p[0] - c[0]!) ** 2 + (p[1] - c[1]!) ** 2 + (p[2] - c[2]!) ** 2);
      if (d < bd) bd = d;
    }
    out[i] = Number.isFinite(bd) ? bd : 0;
  }
  normalise(out);
  return out;
}

// ---------- spectral residual ----------

function spectralResidual(img: RasterImage): Float32Array {
  const N = SR_SIZE;
  // Grey image resampled (area average) to N x N.
  const re = new Float64Array(N * N);
  const im = new Float64Array(N * N);
  const sx = img.width / N;
  const sy = img.height / N;
  for (let y = 0; y < N; y++) {
    for (let x = 0; x < N; x++) {
      const x0 = Math.floor(x * sx);
      const x1 = Math.max(x0 + 1, Math.floor((x + 1) * sx));
      const y0 = Math.floor(y * sy);
      const y1 = Math.max(y0 + 1, Math.floor((y + 1) * sy));
      let s = 0;
      let c = 0;
      for (let yy = y0; yy < Math.min(y1, img.height); yy++) {
        for (let xx = x0; xx < Math.min(x1, img.width); xx++) {
          const j = (yy * img.width + xx) * 4;
          s += 0.299 * img.data[j]! + 0.587 * img.data[j + 1]! + 0.114 * img.data[j + 2]!;
          c++;
        }
      }
      re[y * N + x] = c ? s / c / 255 : 0;
    }
  }
  fft2d(re, im, N, false);
  const logAmp = new Float64Array(N * N);
  const phaseRe = new Float64Array(N * N);
  const phaseIm = new Float64Array(N * N);
  for (let i = 0; i < N * N; i++) {
    const amp = Math.hypot(re[i]!, im[i]!);
    logAmp[i] = Math.log(amp + 1e-9);
    phaseRe[i] = amp > 0 ? re[i]! / amp : 1;
    phaseIm[i] = amp > 0 ? im[i]! / amp : 0;
  }
  // Residual = log amplitude - 3x3 mean (circular).
  for (let y = 0; y < N; y++) {
    for (let x = 0; x < N; x++) {
      let s = 0;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) s += logAmp[((y + dy + N) % N) * N + ((x + dx + N) % N)]!;
      }
      const r = logAmp[y * N + x]! - s / 9;
      const e = Math.exp(r);
      re[y * N + x] = e * phaseRe[y * N + x]!;
      im[y * N + x] = e * phaseIm[y * N + x]!;
    }
  }
  fft2d(re, im, N, true);
  const sal = new Float32Array(N * N);
  for (let i = 0; i < N * N; i++) sal[i] = re[i]! * re[i]! + im[i]! * im[i]!;
  const out = blur(sal, N, N, 2.5);
  normalise(out);
  return out;
}

/** In-place radix-2 FFT of one complex sequence of length n (power of two). */
function fft1d(re: Float64Array, im: Float64Array, n: number, inverse: boolean): void {
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j]!, re[i]!];
      [im[i], im[j]] = [im[j]!, im[i]!];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = ((inverse ? 2 : -2) * Math.PI) / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k;
        const b = a + len / 2;
        const tr = re[b]! * cr - im[b]! * ci;
        const ti = re[b]! * ci + im[b]! * cr;
        re[b] = re[a]! - tr;
        im[b] = im[a]! - ti;
        re[a] = re[a]! + tr;
        im[a] = im[a]! + ti;
        const ncr = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = ncr;
      }
    }
  }
  if (inverse) {
    for (let i = 0; i < n; i++) {
      re[i] = re[i]! / n;
      im[i] = im[i]! / n;
    }
  }
}

/** In-place 2D FFT of an n x n complex image. */
export function fft2d(re: Float64Array, im: Float64Array, n: number, inverse: boolean): void {
  const r = new Float64Array(n);
  const i2 = new Float64Array(n);
  for (let y = 0; y < n; y++) {
    r.set(re.subarray(y * n, y * n + n));
    i2.set(im.subarray(y * n, y * n + n));
    fft1d(r, i2, n, inverse);
    re.set(r, y * n);
    im.set(i2, y * n);
  }
  for (let x = 0; x < n; x++) {
    for (let y = 0; y < n; y++) {
      r[y] = re[y * n + x]!;
      i2[y] = im[y * n + x]!;
    }
    fft1d(r, i2, n, inverse);
    for (let y = 0; y < n; y++) {
      re[y * n + x] = r[y]!;
      im[y * n + x] = i2[y]!;
    }
  }
}

/** Separable Gaussian blur, edges clamped. */
function blur(src: ArrayLike<number>, w: number, h: number, sigma: number): Float32Array {
  const rad = Math.max(1, Math.ceil(sigma * 3));
  const k = new Float32Array(2 * rad + 1);
  let ks = 0;
  for (let i = -rad; i <= rad; i++) {
    k[i + rad] = Math.exp(-(i * i) / (2 * sigma * sigma));
    ks += k[i + rad]!;
  }
  for (let i = 0; i < k.length; i++) k[i] = k[i]! / ks;
  const tmp = new Float32Array(w * h);
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let i = -rad; i <= rad; i++) s += src[y * w + Math.min(w - 1, Math.max(0, x + i))]! * k[i + rad]!;
      tmp[y * w + x] = s;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let i = -rad; i <= rad; i++) s += tmp[Math.min(h - 1, Math.max(0, y + i)) * w + x]! * k[i + rad]!;
      out[y * w + x] = s;
    }
  }
  return out;
}

/** Otsu threshold of values in 0..1. */
function otsu(values: Float32Array): number {
  const bins = 64;
  const hist = new Float64Array(bins);
  for (const v of values) hist[Math.min(bins - 1, Math.floor(v * bins))]! += 1;
  const total = values.length;
  let sumAll = 0;
  for (let i = 0; i < bins; i++) sumAll += i * hist[i]!;
  let wB = 0;
  let sumB = 0;
  let best = 0;
  let bestT = 0.5;
  for (let i = 0; i < bins; i++) {
    wB += hist[i]!;
    if (wB === 0) continue;
    const wF = total - wB;
    if (wF === 0) break;
    sumB += i * hist[i]!;
    const mB = sumB / wB;
    const mF = (sumAll - sumB) / wF;
    const between = wB * wF * (mB - mF) ** 2;
    if (between > best) {
      best = between;
      bestT = (i + 1) / bins;
    }
  }
  return bestT;
}

/** Morphological closing (dilate then erode) with a square of radius r. */
function close(mask: Uint8Array, w: number, h: number, r: number): Uint8Array {
  const morph = (src: Uint8Array, dilateOp: boolean): Uint8Array => {
    const out = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = dilateOp ? 0 : 1;
        for (let dy = -r; dy <= r && v === (dilateOp ? 0 : 1); dy++) {
          const yy = Math.min(h - 1, Math.max(0, y + dy));
          for (let dx = -r; dx <= r; dx++) {
            const xx = Math.min(w - 1, Math.max(0, x + dx));
            const m = src[yy * w + xx]!;
            if (dilateOp && m) {
              v = 1;
              break;
            }
            if (!dilateOp && !m) {
              v = 0;
              break;
            }
          }
        }
        out[y * w + x] = v;
      }
    }
    return out;
  };
  return morph(morph(mask, true), false);
}

/** Pixels above `high`, plus pixels above `low` 8-connected to them. */
function hysteresis(sal: Float32Array, w: number, h: number, high: number, low: number): Uint8Array {
  const mask = new Uint8Array(w * h);
  const stack: number[] = [];
  for (let i = 0; i < w * h; i++) {
    if (sal[i]! >= high) {
      mask[i] = 1;
      stack.push(i);
    }
  }
  while (stack.length) {
    const i = stack.pop()!;
    const x = i % w;
    const y = (i - x) / w;
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const xx = x + dx;
        const yy = y + dy;
        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
        const j = yy * w + xx;
        if (!mask[j] && sal[j]! >= low) {
          mask[j] = 1;
          stack.push(j);
        }
      }
    }
  }
  return mask;
}

interface Component {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  area: number;
  mass: number;
}

/** 8-connected components of the mask with their bounding boxes and saliency mass. */
function components(mask: Uint8Array, sal: Float32Array, w: number, h: number): Component[] {
  const label = new Int32Array(w * h).fill(-1);
  const out: Component[] = [];
  const stack: number[] = [];
  for (let start = 0; start < w * h; start++) {
    if (!mask[start] || label[start] !== -1) continue;
    const c: Component = { x0: w, y0: h, x1: 0, y1: 0, area: 0, mass: 0 };
    label[start] = out.length;
    stack.push(start);
    while (stack.length) {
      const i = stack.pop()!;
      const x = i % w;
      const y = (i - x) / w;
      c.area++;
      c.mass += sal[i]!;
      if (x < c.x0) c.x0 = x;
      if (x > c.x1) c.x1 = x;
      if (y < c.y0) c.y0 = y;
      if (y > c.y1) c.y1 = y;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          const yy = y + dy;
          if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
          const j = yy * w + xx;
          if (mask[j] && label[j] === -1) {
            label[j] = out.length;
            stack.push(j);
          }
        }
      }
    }
    out.push(c);
  }
  return out;
}

/**
 * vlm_analyze CPU fallback: measured photo quality (sharpness, exposure,
 * colourfulness), dominant colours and a usable verdict.
 */
import { colorName, downscale, type Rgb, toGrey, toHex } from './raster.js';
import type { ImageAnalysis, RasterImage } from './types.js';

/** Working resolution for the measurements (longest side). */
const ANALYSIS_SIDE = 512;

/** Thresholds of the usable verdict (measured at ANALYSIS_SIDE). */
export const ANALYSIS_THRESHOLDS = {
  /** Variance of the Laplacian below this: blurry. */
  minSharpness: 60,
  /** Mean luminance (0..255) outside this range: too dark / too bright. */
  minMeanLuminance: 45,
  maxMeanLuminance: 220,
  /** Fraction of clipped pixels above this: blown highlights / crushed shadows. */
  maxClipped: 0.25,
  /** Standard deviation of luminance below this: flat, low contrast. */
  minContrast: 18,
  /** Shorter side of the original below this: too small for an ad. */
  minSide: 240,
} as const;

export function analyzeImageHeuristic(img: RasterImage): ImageAnalysis {
  const { image: small } = downscale(img, ANALYSIS_SIDE);
  const grey = toGrey(small);
  const { width: w, height: h, data: g } = grey;
  const n = w * h;

  // Exposure.
  let sum = 0;
  let sumSq = 0;
  let shadows = 0;
  let highlights = 0;
  for (let i = 0; i < n; i++) {
    const v = g[i]!;
    sum += v;
    sumSq += v * v;
    if (v <= 8) shadows++;
    if (v >= 247) highlights++;
  }
  const meanLum = sum / n;
  const stdLum = Math.sqrt(Math.max(0, sumSq / n - meanLum * meanLum));

  // Sharpness: variance of the 4-neighbour Laplacian.
  let lapSum = 0;
  let lapSq = 0;
  let lapN = 0;
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const i = y * w + x;
      const lap = g[i - 1]! + g[i + 1]! + g[i - w]! + g[i + w]! - 4 * g[i]!;
      lapSum += lap;
      lapSq += lap * lap;
      lapN++;
    }
  }
  const lapMean = lapN ? lapSum / lapN : 0;
  const sharpness = lapN ? lapSq / lapN - lapMean * lapMean : 0;

  // Colourfulness (Hasler & Süsstrunk 2003).
  let rgS = 0;
  let rgSq = 0;
  let ybS = 0;
  let ybSq = 0;
  const d = small.data;
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const r = d[j]!;
    const gg = d[j + 1]!;
    const b = d[j + 2]!;
    const rg = r - gg;
    const yb = 0.5 * (r + gg) - b;
    rgS += rg;
    rgSq += rg * rg;
    ybS += yb;
    ybSq += yb * yb;
  }
  const rgM = rgS / n;
  const ybM = ybS / n;
  const rgSd = Math.sqrt(Math.max(0, rgSq / n - rgM * rgM));
  const ybSd = Math.sqrt(Math.max(0, ybSq / n - ybM * ybM));
  const colorfulness = Math.sqrt(rgSd ** 2 + ybSd ** 2) + 0.3 * Math.sqrt(rgM ** 2 + ybM ** 2);

  const palette = dominantColors(img, 5);

  const t = ANALYSIS_THRESHOLDS;
  const problems: string[] = [];
  if (Math.min(img.width, img.height) < t.minSide) {
    problems.push(`too small: ${img.width}x${img.height}, the shorter side should be at least ${t.minSide}px`);
  }
  if (sharpness < t.minSharpness)
    problems.push(`blurry: Laplacian variance ${sharpness.toFixed(1)} < ${t.minSharpness}`);
  if (meanLum < t.minMeanLuminance) problems.push(`underexposed: mean luminance ${meanLum.toFixed(0)} / 255`);
  if (meanLum > t.maxMeanLuminance) problems.push(`overexposed: mean luminance ${meanLum.toFixed(0)} / 255`);
  if (highlights / n > t.maxClipped) {
    problems.push(`blown highlights: ${(100 * (highlights / n)).toFixed(0)}% of pixels clipped white`);
  }
  if (shadows / n > t.maxClipped) {
    problems.push(`crushed shadows: ${(100 * (shadows / n)).toFixed(0)}% of pixels clipped black`);
  }
  if (stdLum < t.minContrast) problems.push(`flat: luminance standard deviation ${stdLum.toFixed(1)}`);

  const orientation = img.width > img.height * 1.1 ? 'landscape' : img.height > img.width * 1.1 ? 'portrait' : 'square';
  const sharpWord = sharpness < t.minSharpness ? 'soft' : sharpness > 400 ? 'crisp' : 'sharp';
  const exposureWord =
    meanLum < t.minMeanLuminance
      ? 'dark'
      : meanLum > t.maxMeanLuminance
        ? 'very bright'
        : meanLum < 90
          ? 'moody, low-key'
          : meanLum > 170
            ? 'bright, high-key'
            : 'well-exposed';
  const colourWord =
    colorfulness < 15
      ? 'muted'
      : colorfulness < 33
        ? 'moderately colourful'
        : colorfulness < 60
          ? 'colourful'
          : 'vivid';
  const names = [...new Set(palette.map((p) => colorName(p.rgb)))].slice(0, 3);
  const description =
    `A ${sharpWord}, ${exposureWord} ${orientation} photo (${img.width}x${img.height}), ${colourWord}, ` +
    `dominated by ${joinWords(names)} tones.`;

  return {
    usable: problems.length === 0,
    description,
    dominantColors: palette.map((p) => p.hex),
    problems,
    metrics: {
      width: img.width,
      height: img.height,
      sharpness: round(sharpness, 2),
      meanLuminance: round(meanLum, 2),
      luminanceStd: round(stdLum, 2),
      clippedShadows: round(shadows / n, 4),
      clippedHighlights: round(highlights / n, 4),
      colorfulness: round(colorfulness, 2),
    },
  };
}

function joinWords(words: string[]): string {
  if (words.length <= 1) return words[0] ?? 'neutral';
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/**
 * Dominant colours: median cut on a <=64px copy, refined by a few k-means
 * iterations, most populous first. Deterministic.
 */
export function dominantColors(img: RasterImage, k = 5): Array<{ hex: string; rgb: Rgb; share: number }> {
  const { image: small } = downscale(img, 64);
  const n = small.width * small.height;
  const px: Rgb[] = [];
  for (let i = 0; i < n; i++) px.push([small.data[i * 4]!, small.data[i * 4 + 1]!, small.data[i * 4 + 2]!]);

  // Median cut.
  let boxes: Rgb[][] = [px];
  while (boxes.length < k) {
    let best = -1;
    let bestRange = -1;
    let bestCh = 0;
    boxes.forEach((b, i) => {
      if (b.length < 2) return;
      for (let c = 0; c < 3; c++) {
        let lo = 255;
        let hi = 0;
        for (const p of b) {
          lo = Math.min(lo, p[c]!);
          hi = Math.max(hi, p[c]!);
        }
        if (hi - lo > bestRange) {
          bestRange = hi - lo;
          best = i;
          bestCh = c;
        }
      }
    });
    if (best < 0 || bestRange <= 0) break;
    const b = boxes[best]!.slice().sort((p, q) => p[bestCh]! - q[bestCh]!);
    const mid = b.length >> 1;
    boxes = [...boxes.slice(0, best), b.slice(0, mid), b.slice(mid), ...boxes.slice(best + 1)];
  }
  let centres: Rgb[] = boxes.map((b) => {
    const s = [0, 0, 0];
    for (const p of b) for (let c = 0; c < 3; c++) s[c]! += p[c]!;
    return s.map((v) => v / b.length) as Rgb;
  });

  // k-means refinement.
  const assign = new Int32Array(n);
  for (let iter = 0; iter < 8; iter++) {
    for (let i = 0; i < n; i++) {
      const p = px[i]!;
      let bi = 0;
      let bd = Number.POSITIVE_INFINITY;
      centres.forEach((c, j) => {
        const dd = (p[0] - c[0]) ** 2 + (p[1] - c[1]) ** 2 + (p[2] - c[2]) ** 2;
        if (dd < bd) {
          bd = dd;
          bi = j;
        }
      });
      assign[i] = bi;
    }
    const sums = centres.map(() => [0, 0, 0, 0]);
    for (let i = 0; i < n; i++) {
      const s = sums[assign[i]!]!;
      const p = px[i]!;
      s[0]! += p[0];
      s[1]! += p[1];
      s[2]! += p[2];
      s[3]! += 1;
    }
    centres = centres.map((c, j) => {
      const s = sums[j]!;
      return s[3]! > 0 ? ([s[0]! / s[3]!, s[1]! / s[3]!, s[2]! / s[3]!] as Rgb) : c;
    });
  }
  const counts = centres.map(() => 0);
  for (let i = 0; i < n; i++) counts[assign[i]!]!++;
  return centres
    .map((c, j) => ({ rgb: c.map((v) => Math.round(v)) as Rgb, share: counts[j]! / n }))
    .filter((c) => c.share > 0)
    .sort((a, b) => b.share - a.share)
    .map((c) => ({ ...c, hex: toHex(c.rgb), share: Math.round(c.share * 1000) / 1000 }));
}

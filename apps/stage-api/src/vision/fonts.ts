/**
 * Pretendard (OFL-1.1, covers Latin and Hangul) registered once per process
 * with @napi-rs/canvas, and text measurement with the real font.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createCanvas, GlobalFonts, type SKRSContext2D } from '@napi-rs/canvas';

export const FONT_FAMILY = 'Pretendard';
export const FONT_WEIGHTS = { regular: 400, semibold: 600, bold: 700, extrabold: 800 } as const;
const FILES: Record<number, string> = {
  400: 'Pretendard-Regular.otf',
  600: 'Pretendard-SemiBold.otf',
  700: 'Pretendard-Bold.otf',
  800: 'Pretendard-ExtraBold.otf',
};

let registered = false;
let measureCtx: SKRSContext2D | null = null;

/** Folder holding the pretendard package's static OTF files. */
export function pretendardDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('pretendard/package.json')), 'dist', 'public', 'static');
}

/** Registers the Pretendard weights (idempotent). */
export function ensureFonts(): void {
  if (registered) return;
  const dir = pretendardDir();
  for (const file of Object.values(FILES)) {
    const key = GlobalFonts.registerFromPath(join(dir, file), FONT_FAMILY);
    if (!key) throw new Error(`could not register font ${join(dir, file)}`);
  }
  registered = true;
}

export function fontSpec(size: number, weight: number): string {
  return `${weight} ${size}px ${FONT_FAMILY}`;
}

export interface LineMetrics {
  /** Advance width. */
  width: number;
  /** Glyph extent left of the drawing x (positive = extends left). */
  left: number;
  /** Glyph extent right of the drawing x. */
  right: number;
  /** Glyph extent above the baseline. */
  ascent: number;
  /** Glyph extent below the baseline. */
  descent: number;
}

const cache = new Map<string, LineMetrics>();

/** Measures a line of text with the registered font (cached). */
export function measureLine(text: string, size: number, weight: number): LineMetrics {
  const key = `${weight}|${size}|${text}`;
  const hit = cache.get(key);
  if (hit) return hit;
  ensureFonts();
  if (!measureCtx) measureCtx = createCanvas(8, 8).getContext('2d');
  measureCtx.font = fontSpec(size, weight);
  const m = measureCtx.measureText(text);
  const out: LineMetrics = {
    width: m.width,
    left: m.actualBoundingBoxLeft,
    right: m.actualBoundingBoxRight,
    ascent: m.actualBoundingBoxAscent,
    descent: m.actualBoundingBoxDescent,
  };
  if (cache.size > 5000) cache.clear();
  cache.set(key, out);
  return out;
}

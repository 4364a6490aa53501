/**
 * Typesetting of the text block (headline + optional tagline) with the real
 * font: balanced line breaks, tight glyph boxes, consistent padding. Shared by
 * the planner (which positions blocks) and the renderer (which draws them).
 *
 * Bounds (docs/stage-api.md, "Rendering bounds"): a block never has more than
 * MAX_TEXT_LINES lines, and with `overflow: 'ellipsis'` it always fits its
 * width: a word wider than the line is broken between characters, and text
 * beyond the last allowed line is cut with an ellipsis.
 */
import { FONT_WEIGHTS, measureLine } from './fonts.js';
import type { AdTexts, Box } from './types.js';

/** The largest canvas side the renderer draws. */
export const MAX_CANVAS_SIDE = 4096;
/** The most text lines of one creative (headline and tagline together). */
export const MAX_TEXT_LINES = 6;
const ELLIPSIS = '\u2026';

export type Align = 'left' | 'center' | 'right';

export interface BlockStyle {
  headlineSize: number;
  taglineSize: number;
  headlineWeight: number;
  taglineWeight: number;
  align: Align;
  /** Maximum glyph width of a line. */
  maxWidth: number;
  maxHeadlineLines?: number;
  maxTaglineLines?: number;
  /**
   * 'fail' (default): null when the text does not fit. 'ellipsis': always a
   * block; over-wide words are broken and overflowing text is cut with "…".
   */
  overflow?: 'fail' | 'ellipsis';
}

export interface BlockLine {
  role: 'headline' | 'tagline';
  text: string;
  fontSize: number;
  fontWeight: number;
  /** Tight glyph box relative to the block's panel origin (top-left of the padded panel). */
  box: Box;
}

export interface TextBlock {
  lines: BlockLine[];
  /** Panel size: glyph extent plus padding on every side. */
  width: number;
  height: number;
  padX: number;
  padY: number;
  /** Panel corner radius. */
  radius: number;
}

/** Tagline size for a headline size (the tagline is a quieter second voice). */
export function taglineSizeFor(headlineSize: number): number {
  return Math.max(17, Math.round(headlineSize * 0.62));
}

/** Panel padding and radius for a headline size: one rule for every creative. */
export function panelMetrics(headlineSize: number): { padX: number; padY: number; radius: number } {
  return {
    padX: Math.round(headlineSize * 0.62),
    padY: Math.round(headlineSize * 0.5),
    radius: Math.round(headlineSize * 0.28),
  };
}

/**
 * Splits words into at most `maxLines` lines so that the widest line is as
 * narrow as possible, using the fewest lines that fit `maxWidth`. Returns null
 * when even `maxLines` lines do not fit.
 */
export function balancedWrap(
  text: string,
  size: number,
  weight: number,
  maxWidth: number,
  maxLines: number,
): string[] | null {
  const words = text.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return [];
  const widthOf = (s: string): number => {
    const m = measureLine(s, size, weight);
    return m.left + m.right;
  };
  if (words.length > 14) {
    // Long copy: greedy fill (balanced search would explode combinatorially).
    const lines: string[] = [];
    let cur = '';
    for (const wd of words) {
      const next = cur ? `${cur} ${wd}` : wd;
      if (cur && widthOf(next) > maxWidth) {
        lines.push(cur);
        cur = wd;
      } else cur = next;
    }
    if (cur) lines.push(cur);
    return lines.length <= maxLines && Math.max(...lines.map(widthOf)) <= maxWidth ? lines : null;
  }
  for (let k = 1; k <= Math.min(maxLines, words.length); k++) {
    let best: string[] | null = null;
    let bestW = Number.POSITIVE_INFINITY;
    // Enumerate break positions (headlines are short: a handful of words).
    const breaks = (start: number, left: number, acc: string[]): void => {
      if (left === 1) {
        const lines = [...acc, words.slice(start).join(' ')];
        const w = Math.max(...lines.map(widthOf));
        if (w < bestW) {
          bestW = w;
          best = lines;
        }
        return;
      }
      for (let end = start + 1; end <= words.length - left + 1; end++) {
        breaks(end, left - 1, [...acc, words.slice(start, end).join(' ')]);
      }
    };
    breaks(0, k, []);
    if (best && bestW <= maxWidth) return best;
  }
  return null;
}

const graphemes = new Intl.Segmenter('en', { granularity: 'grapheme' });

/** The graphemes of `s` (a Hangul syllable, an emoji with its modifiers: one each). */
function splitGraphemes(s: string): string[] {
  return Array.from(graphemes.segment(s), (g) => g.segment);
}

/** The longest prefix of `chars` (at least one) whose glyphs fit `maxWidth`, by binary search. */
function fittingPrefix(chars: string[], size: number, weight: number, maxWidth: number): number {
  const widthOf = (n: number) => {
    const m = measureLine(chars.slice(0, n).join(''), size, weight);
    return m.left + m.right;
  };
  let lo = 1;
  let hi = chars.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (widthOf(mid) <= maxWidth) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Breaks every word wider than `maxWidth` between graphemes into pieces that fit. */
export function breakLongWords(text: string, size: number, weight: number, maxWidth: number): string[] {
  const out: string[] = [];
  for (const word of text.trim().split(/\s+/).filter(Boolean)) {
    const m = measureLine(word, size, weight);
    if (m.left + m.right <= maxWidth) {
      out.push(word);
      continue;
    }
    let chars = splitGraphemes(word);
    while (chars.length > 0) {
      const n = fittingPrefix(chars, size, weight, maxWidth);
      out.push(chars.slice(0, n).join(''));
      chars = chars.slice(n);
    }
  }
  return out;
}

/** `line` shortened until `line + "…"` fits `maxWidth` (just "…" at worst). */
function ellipsise(line: string, size: number, weight: number, maxWidth: number): string {
  const chars = splitGraphemes(line.trimEnd());
  const fits = (n: number) => {
    const m = measureLine(`${chars.slice(0, n).join('').trimEnd()}${ELLIPSIS}`, size, weight);
    return m.left + m.right <= maxWidth;
  };
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return `${chars.slice(0, lo).join('').trimEnd()}${ELLIPSIS}`;
}

/**
 * At most `maxLines` lines that always fit `maxWidth`: over-wide words broken,
 * balanced when the text fits, else filled greedily and the last line
 * ellipsised.
 */
export function wrapBounded(text: string, size: number, weight: number, maxWidth: number, maxLines: number): string[] {
  const words = breakLongWords(text, size, weight, maxWidth);
  if (words.length === 0 || maxLines < 1) return [];
  const joined = words.join(' ');
  const balanced = words.length <= 14 ? balancedWrap(joined, size, weight, maxWidth, maxLines) : null;
  if (balanced) return balanced;
  const widthOf = (s: string) => {
    const m = measureLine(s, size, weight);
    return m.left + m.right;
  };
  const lines: string[] = [];
  let cur = '';
  let i = 0;
  for (; i < words.length; i++) {
    const wd = words[i] as string;
    const next = cur ? `${cur} ${wd}` : wd;
    if (cur && widthOf(next) > maxWidth) {
      lines.push(cur);
      cur = wd;
      if (lines.length === maxLines) break;
    } else cur = next;
  }
  if (lines.length < maxLines) {
    lines.push(cur);
    return lines;
  }
  // More text than lines: the last line ends with an ellipsis.
  const last = lines.length - 1;
  lines[last] = ellipsise(`${lines[last]} ${cur}`, size, weight, maxWidth);
  return lines;
}

/**
 * Typesets the block, at most MAX_TEXT_LINES lines in all. With the default
 * overflow 'fail', null when the text does not fit the style's width and
 * line limits; with 'ellipsis', always a block (see wrapBounded).
 */
export function typesetBlock(texts: AdTexts, style: BlockStyle): TextBlock | null {
  const tagline = texts.tagline?.trim();
  const bounded = style.overflow === 'ellipsis';
  const maxH = Math.max(1, Math.min(style.maxHeadlineLines ?? 3, MAX_TEXT_LINES - (tagline ? 1 : 0)));
  const hl = bounded
    ? wrapBounded(texts.headline, style.headlineSize, style.headlineWeight, style.maxWidth, maxH)
    : balancedWrap(texts.headline, style.headlineSize, style.headlineWeight, style.maxWidth, maxH);
  if (!hl || hl.length === 0) return null;
  const maxT = Math.min(style.maxTaglineLines ?? 2, MAX_TEXT_LINES - hl.length);
  const tl = !tagline
    ? []
    : bounded
      ? wrapBounded(tagline, style.taglineSize, style.taglineWeight, style.maxWidth, maxT)
      : maxT > 0
        ? balancedWrap(tagline, style.taglineSize, style.taglineWeight, style.maxWidth, maxT)
        : null;
  if (!tl) return null;

  // Baselines: headline lines 1.12 em apart, the tagline 0.62 em (headline) below
  // the headline's last baseline plus its own ascent, tagline lines 1.45 em apart.
  type Raw = { role: 'headline' | 'tagline'; text: string; size: number; weight: number; baseline: number };
  const raw: Raw[] = [];
  let baseline = 0;
  hl.forEach((text, i) => {
    if (i > 0) baseline += style.headlineSize * 1.12;
    raw.push({ role: 'headline', text, size: style.headlineSize, weight: style.headlineWeight, baseline });
  });
  tl.forEach((text, i) => {
    baseline += i === 0 ? style.headlineSize * 0.55 + style.taglineSize * 1.05 : style.taglineSize * 1.45;
    raw.push({ role: 'tagline', text, size: style.taglineSize, weight: style.taglineWeight, baseline });
  });
  const measured = raw.map((r) => ({ ...r, m: measureLine(r.text, r.size, r.weight) }));
  const glyphW = Math.max(...measured.map((r) => r.m.left + r.m.right));
  const top = Math.min(...measured.map((r) => r.baseline - r.m.ascent));
  const bottom = Math.max(...measured.map((r) => r.baseline + r.m.descent));
  const { padX, padY, radius } = panelMetrics(style.headlineSize);
  const lines: BlockLine[] = measured.map((r) => {
    const w = r.m.left + r.m.right;
    const offset = style.align === 'left' ? 0 : style.align === 'right' ? glyphW - w : (glyphW - w) / 2;
    return {
      role: r.role,
      text: r.text,
      fontSize: r.size,
      fontWeight: r.weight,
      box: { x: padX + offset, y: padY + (r.baseline - r.m.ascent - top), w, h: r.m.ascent + r.m.descent },
    };
  });
  return {
    lines,
    width: glyphW + 2 * padX,
    height: bottom - top + 2 * padY,
    padX,
    padY,
    radius,
  };
}

export const DEFAULT_WEIGHTS = { headline: FONT_WEIGHTS.bold, tagline: FONT_WEIGHTS.semibold } as const;

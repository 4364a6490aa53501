/**
 * The planner's candidates (../planner.ts): every place and size the text
 * block could take, typeset with the real font. In the photo: anchors
 * (corners, top/bottom/middle bands, centre, and the free bands beside the
 * detected objects) x margins x headline sizes x line widths. Outside it:
 * caption bands that extend the canvas, and a last-resort band with smaller
 * type. Candidates carry no score yet (scoring.ts).
 */
import { measureLine } from '../fonts.js';
import {
  type Align,
  DEFAULT_WEIGHTS,
  MAX_CANVAS_SIDE,
  MAX_TEXT_LINES,
  panelMetrics,
  taglineSizeFor,
  typesetBlock,
} from '../layout.js';
import type { AdTexts, Box, Detection, PlacementProposal } from '../types.js';

export type Anchor =
  | 'top-left'
  | 'top-center'
  | 'top-right'
  | 'middle-left'
  | 'center'
  | 'middle-right'
  | 'bottom-left'
  | 'bottom-center'
  | 'bottom-right'
  | 'band-bottom'
  | 'band-bottom-left'
  | 'band-right';

export type BandSide = 'band-bottom' | 'band-bottom-left' | 'band-right';

export type Candidate = PlacementProposal & { anchor: Anchor; canvas?: { width: number; height: number } };

type Block = NonNullable<ReturnType<typeof typesetBlock>>;

/** The photo the text is placed on: its size, its shorter side, the objects and their keep-out zones. */
export interface Scene {
  W: number;
  H: number;
  /** The shorter side. */
  m: number;
  objects: Array<{ det: Detection; zone: Box }>;
}

export function makeCandidate(
  anchor: Anchor,
  region: Box,
  block: Block,
  hs: number,
  canvas: { width: number; height: number } | null,
): Candidate {
  const lines = block.lines.map((l) => ({
    role: l.role,
    text: l.text,
    box: { x: region.x + l.box.x, y: region.y + l.box.y, w: l.box.w, h: l.box.h },
    fontSize: l.fontSize,
    fontWeight: l.fontWeight,
  }));
  const cand: Candidate = {
    rank: 0,
    region,
    lines,
    score: 0,
    components: { headlineSize: hs, lineCount: lines.length },
    rejected: null,
    anchor,
  };
  if (canvas) cand.canvas = canvas;
  return cand;
}

const alignFor = (a: Anchor): Align =>
  a.endsWith('left')
    ? 'left'
    : a.endsWith('right') && a !== 'band-right'
      ? 'right'
      : a === 'band-right'
        ? 'left'
        : 'center';

/** Candidates inside the photo, each position once. */
export function inPhotoCandidates(scene: Scene, texts: AdTexts): Candidate[] {
  const { W, H, m, objects } = scene;
  // Free bands beside the objects (for object-relative anchors).
  const union = objects.length
    ? objects.reduce<Box>((u, o) => {
        const x0 = Math.min(u.x, o.zone.x);
        const y0 = Math.min(u.y, o.zone.y);
        return {
          x: x0,
          y: y0,
          w: Math.max(u.x + u.w, o.zone.x + o.zone.w) - x0,
          h: Math.max(u.y + u.h, o.zone.y + o.zone.h) - y0,
        };
      }, objects[0]!.zone)
    : null;

  const headlineFractions = [0.065, 0.075, 0.085, 0.1, 0.115];
  const widthFractions = [0.4, 0.55, 0.7, 0.88];
  const margins = [0.045, 0.075];
  const inPhotoAnchors: Anchor[] = [
    'top-left',
    'top-center',
    'top-right',
    'middle-left',
    'center',
    'middle-right',
    'bottom-left',
    'bottom-center',
    'bottom-right',
  ];

  const cands: Candidate[] = [];
  const seen = new Set<string>();
  for (const hf of headlineFractions) {
    const hs = Math.max(22, Math.round(hf * m));
    const ts = taglineSizeFor(hs);
    for (const wf of widthFractions) {
      for (const anchor of inPhotoAnchors) {
        const align = alignFor(anchor);
        const block = typesetBlock(texts, {
          headlineSize: hs,
          taglineSize: ts,
          headlineWeight: DEFAULT_WEIGHTS.headline,
          taglineWeight: DEFAULT_WEIGHTS.tagline,
          align,
          maxWidth: wf * W - 2 * panelMetrics(hs).padX,
        });
        if (!block) continue;
        for (const mf of margins) {
          const mg = Math.round(mf * m);
          const positions: Array<{ x: number; y: number }> = [];
          const bx = anchor.endsWith('left')
            ? mg
            : anchor.endsWith('right')
              ? W - mg - block.width
              : (W - block.width) / 2;
          const by = anchor.startsWith('top')
            ? mg
            : anchor.startsWith('bottom')
              ? H - mg - block.height
              : (H - block.height) / 2;
          positions.push({ x: bx, y: by });
          // Object-relative variant: centre the block in the free band beside the objects.
          if (union) {
            if (anchor === 'middle-left' && union.x > block.width)
              positions.push({ x: (union.x - block.width) / 2, y: by });
            const right = union.x + union.w;
            if (anchor === 'middle-right' && W - right > block.width) {
              positions.push({ x: right + (W - right - block.width) / 2, y: by });
            }
            if (anchor === 'top-center' && union.y > block.height)
              positions.push({ x: bx, y: (union.y - block.height) / 2 });
            const bottom = union.y + union.h;
            if (anchor === 'bottom-center' && H - bottom > block.height) {
              positions.push({ x: bx, y: bottom + (H - bottom - block.height) / 2 });
            }
          }
          for (const pos of positions) {
            const region = {
              x: Math.round(pos.x),
              y: Math.round(pos.y),
              w: Math.round(block.width),
              h: Math.round(block.height),
            };
            const key = `${anchor}|${hs}|${region.x},${region.y},${region.w},${region.h}`;
            if (seen.has(key)) continue;
            seen.add(key);
            cands.push(makeCandidate(anchor, region, block, hs, null));
          }
        }
      }
    }
  }
  return cands;
}

/**
 * Caption bands: the canvas extended below (or beside) the photo, the text
 * on a solid band, so it never covers the product.
 */
export function bandCandidates(
  scene: Scene,
  texts: AdTexts,
): Array<{ candidate: Candidate; side: BandSide; hs: number }> {
  const { W, H, m } = scene;
  const out: Array<{ candidate: Candidate; side: BandSide; hs: number }> = [];
  for (const hf of [0.075, 0.085, 0.095]) {
    const hs = Math.max(22, Math.round(hf * m));
    const ts = taglineSizeFor(hs);
    for (const side of ['band-bottom', 'band-bottom-left', 'band-right'] as const) {
      if (side === 'band-right' && W > H * 0.9) continue;
      // The left-aligned caption is narrower (a two-line headline, editorial style).
      const maxW = side === 'band-right' ? Math.max(W * 0.62, 260) : side === 'band-bottom-left' ? W * 0.68 : W * 0.86;
      const block = typesetBlock(texts, {
        headlineSize: hs,
        taglineSize: ts,
        headlineWeight: DEFAULT_WEIGHTS.headline,
        taglineWeight: DEFAULT_WEIGHTS.tagline,
        align: side === 'band-bottom' ? 'center' : 'left',
        maxWidth: maxW - 2 * panelMetrics(hs).padX,
        maxHeadlineLines: side === 'band-bottom' ? 3 : 2,
      });
      if (!block) continue;
      const bandPad = Math.round(0.35 * hs);
      let region: Box;
      let canvas: { width: number; height: number };
      if (side === 'band-bottom' || side === 'band-bottom-left') {
        const bandH = Math.round(block.height + 2 * bandPad);
        canvas = { width: W, height: H + bandH };
        region = {
          x: side === 'band-bottom' ? Math.round((W - block.width) / 2) : Math.round(0.03 * W),
          y: H + bandPad,
          w: Math.round(block.width),
          h: Math.round(block.height),
        };
      } else {
        const bandW = Math.round(block.width + 2 * bandPad);
        canvas = { width: W + bandW, height: H };
        region = {
          x: W + bandPad,
          y: Math.round((H - block.height) / 2),
          w: Math.round(block.width),
          h: Math.round(block.height),
        };
      }
      out.push({ candidate: makeCandidate(side, region, block, hs, canvas), side, hs });
    }
  }
  return out;
}

/**
 * Last resort (tiny photos, very long copy): a caption band with smaller type
 * and more lines, the canvas widened when a word is wider than the photo but
 * fits MAX_CANVAS_SIDE; longer words are broken, and text beyond
 * MAX_TEXT_LINES lines is cut with an ellipsis (docs/stage-api.md, "Rendering
 * bounds"). `size` is the headline size the candidate was made with.
 */
export function lastResortCandidate(scene: Scene, texts: AdTexts): { candidate: Candidate; size: number } | null {
  const { W, H, m } = scene;
  const styleAt = (hs: number, overflow: 'fail' | 'ellipsis') => {
    const padX = panelMetrics(hs).padX;
    const widest = MAX_CANVAS_SIDE - 2 * padX - 2 * Math.round(0.35 * (hs + 2));
    const word = widestWord(texts, hs);
    return {
      headlineSize: hs,
      taglineSize: Math.max(10, Math.round(hs * 0.6)),
      headlineWeight: DEFAULT_WEIGHTS.headline,
      taglineWeight: DEFAULT_WEIGHTS.tagline,
      align: 'center' as const,
      maxWidth: Math.min(widest, Math.max(W * 0.9 - 2 * padX, hs * 8, word <= widest ? word : 0)),
      maxHeadlineLines: texts.tagline?.trim() ? MAX_TEXT_LINES - 2 : MAX_TEXT_LINES,
      maxTaglineLines: 2,
      overflow,
    };
  };
  // The whole text at the largest size that holds it; else, at the smallest, broken and cut.
  let block: ReturnType<typeof typesetBlock> = null;
  let hs = Math.max(12, Math.min(22, Math.round(0.08 * m)));
  for (; hs >= 10 && !block; hs -= 2) block = typesetBlock(texts, styleAt(hs, 'fail'));
  if (!block) {
    hs = 10;
    block = typesetBlock(texts, styleAt(hs, 'ellipsis'));
    hs -= 2;
  }
  if (!block) return null;
  const size = hs + 2;
  const bandPad = Math.round(0.35 * size);
  const width = Math.max(W, Math.ceil(block.width + 2 * bandPad));
  const bandH = Math.round(block.height + 2 * bandPad);
  const region = {
    x: Math.round((width - block.width) / 2),
    y: H + bandPad,
    w: Math.round(block.width),
    h: Math.round(block.height),
  };
  return { candidate: makeCandidate('band-bottom', region, block, size, { width, height: H + bandH }), size };
}

/** Width of the widest single word of the texts at headline size `hs` (tagline words at 0.6x). */
function widestWord(texts: AdTexts, hs: number): number {
  let w = 0;
  for (const word of texts.headline.split(/\s+/)) {
    const m = measureLine(word, hs, DEFAULT_WEIGHTS.headline);
    w = Math.max(w, m.left + m.right);
  }
  for (const word of (texts.tagline ?? '').split(/\s+/).filter(Boolean)) {
    const m = measureLine(word, Math.max(10, Math.round(hs * 0.6)), DEFAULT_WEIGHTS.tagline);
    w = Math.max(w, m.left + m.right);
  }
  return Math.ceil(w) + 1;
}

/**
 * planner: where the text block goes.
 *
 * Candidates = anchors (corners, top/bottom/middle bands, centre, and the free
 * bands beside the detected objects) x margins x headline sizes x line widths,
 * each typeset with the real font (balanced breaks, headline <= 3 lines,
 * tagline <= 2). The hard rule: the whole panel (glyphs + padding) never
 * overlaps an object box dilated by a margin; such candidates are kept with
 * the reason. Valid candidates are scored on a downscaled copy:
 *
 *   score = 0.30 * (1 - clutter / 0.25)      edge density under the panel
 *         + 0.20 * min(1, contrast / 7)      best of white/near-black text vs the 5th-percentile pixel
 *         + 0.20 * breathing room            distance to the nearest object, edges balanced
 *         + 0.30 * min(1, size / 0.085)      headline size relative to the shorter image side
 *         - 0.50 * max(0, panelArea - 0.28)  panels that swallow the photo
 *         - 0.60 * max(0, panelWidth - 0.65) banner-wide panels (a compact block reads better)
 *
 * When the objects leave no room inside the photo (a tight product shot), the
 * planner also proposes a caption band: the canvas is extended below (or
 * beside) the photo and the text sits on a solid band, so the text still never
 * covers the product. Bands score 0.8x (an in-photo placement is preferred
 * when one is clean).
 */
import { measureLine } from './fonts.js';
import {
  panelMetrics,
  typesetBlock,
  DEFAULT_WEIGHTS,
  MAX_CANVAS_SIDE,
  MAX_TEXT_LINES,
  taglineSizeFor,
  type Align,
} from './layout.js';
import {
  clipBox,
  contrastRatio,
  dilate,
  downscale,
  intersection,
  parseColor,
  relativeLuminance,
  rgbToHsl,
  hslToRgb,
  contrastOfColors,
  rgba,
  sobel,
  toGrey,
  EDGE_THRESHOLD,
  type Rgb,
} from './raster.js';
import { dominantColors } from './analyze.js';
import type {
  AdTexts,
  Box,
  Detection,
  ImageAnalysis,
  PlacementProposal,
  PlanResult,
  RasterImage,
  TextTreatment,
} from './types.js';

export interface PlanOptions {
  /** Dilation of every object box, as a fraction of the shorter image side (default 0.05). */
  objectMargin?: number;
  /** Most proposals returned (valid first, then rejected); default: all of them. */
  maxProposals?: number;
  /** Allow caption-band proposals that extend the canvas (default true). */
  allowBands?: boolean;
}

type Anchor =
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

const PLAN_SIDE = 384;

export function planPlacements(
  img: RasterImage,
  detections: Detection[],
  texts: AdTexts,
  opts: PlanOptions = {},
): PlanResult {
  if (!texts || typeof texts.headline !== 'string' || texts.headline.trim() === '') {
    throw new TypeError('planPlacements needs a non-empty headline');
  }
  const W = img.width;
  const H = img.height;
  const m = Math.min(W, H);
  const objMargin = Math.round((opts.objectMargin ?? 0.05) * m);
  // Keep-out zones: object boxes dilated by the margin, clipped to the photo
  // (a caption band outside the photo cannot cover the object).
  const objects = detections.map((d) => ({ det: d, zone: clipBox(dilate(d.box, objMargin), W, H) }));

  // Downscaled measurements: edge map (integral image) and luminance.
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

  type Cand = PlacementProposal & { anchor: Anchor; canvas?: { width: number; height: number } };
  const cands: Cand[] = [];
  const seen = new Set<string>();

  const alignFor = (a: Anchor): Align =>
    a.endsWith('left')
      ? 'left'
      : a.endsWith('right') && a !== 'band-right'
        ? 'right'
        : a === 'band-right'
          ? 'left'
          : 'center';

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
            cands.push(makeCand(anchor, region, block, hs, null));
          }
        }
      }
    }
  }

  function makeCand(
    anchor: Anchor,
    region: Box,
    block: NonNullable<ReturnType<typeof typesetBlock>>,
    hs: number,
    canvas: { width: number; height: number } | null,
  ): Cand {
    const lines = block.lines.map((l) => ({
      role: l.role,
      text: l.text,
      box: { x: region.x + l.box.x, y: region.y + l.box.y, w: l.box.w, h: l.box.h },
      fontSize: l.fontSize,
      fontWeight: l.fontWeight,
    }));
    const cand: Cand = {
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

  // Hard rules and scores for in-photo candidates.
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
    const clutter = clutterOf(r);
    const contrast = contrastOf(r);
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

  // Caption bands when fewer than three clean in-photo placements exist.
  const validInPhoto = cands.filter((c) => !c.rejected).length;
  if ((opts.allowBands ?? true) && validInPhoto < 3) {
    for (const hf of [0.075, 0.085, 0.095]) {
      const hs = Math.max(22, Math.round(hf * m));
      const ts = taglineSizeFor(hs);
      for (const side of ['band-bottom', 'band-bottom-left', 'band-right'] as const) {
        if (side === 'band-right' && W > H * 0.9) continue;
        // The left-aligned caption is narrower (a two-line headline, editorial style).
        const maxW =
          side === 'band-right' ? Math.max(W * 0.62, 260) : side === 'band-bottom-left' ? W * 0.68 : W * 0.86;
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
        const c = makeCand(side, region, block, hs, canvas);
        const size = Math.min(1, hs / (0.085 * m));
        // Centred caption first, the left-aligned one as the alternative.
        c.score = (side === 'band-bottom-left' ? 0.78 : 0.8) * (0.3 + 0.2 + 0.2 + 0.3 * size);
        Object.assign(c.components, { clutter: 0, contrast: 21, breathing: 1, size: round4(size), band: 1 });
        cands.push(c);
      }
    }
  }

  // Last resort (tiny photos, very long copy): a caption band with smaller type
  // and more lines, the canvas widened when a word is wider than the photo but
  // fits MAX_CANVAS_SIDE; longer words are broken, and text beyond
  // MAX_TEXT_LINES lines is cut with an ellipsis (docs/stage-api.md, "Rendering bounds").
  if (!cands.some((c) => !c.rejected)) {
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
    if (block) {
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
      const c = makeCand('band-bottom', region, block, size, { width, height: H + bandH });
      c.score = 0.1;
      Object.assign(c.components, {
        clutter: 0,
        contrast: 21,
        breathing: 1,
        size: round4(size / (0.085 * m)),
        band: 1,
      });
      cands.push(c);
    }
  }

  // Order: valid by score with the best of each anchor first (so the k-th
  // variant gets a genuinely different placement), then the rejected.
  const valid = cands.filter((c) => !c.rejected).sort((a, b) => b.score - a.score);
  const firstPerAnchor: Cand[] = [];
  const rest: Cand[] = [];
  const anchorsSeen = new Set<string>();
  for (const c of valid) {
    const key = `${c.anchor}`;
    if (anchorsSeen.has(key)) rest.push(c);
    else {
      anchorsSeen.add(key);
      firstPerAnchor.push(c);
    }
  }
  const rejected = cands.filter((c) => c.rejected).sort((a, b) => b.score - a.score);
  const max = opts.maxProposals ?? Number.POSITIVE_INFINITY;
  const validOut = [...firstPerAnchor, ...rest].slice(0, Math.max(1, Math.floor(max * 0.75)));
  const ordered = [...validOut, ...rejected.slice(0, Math.max(0, max - validOut.length))];
  const proposals: PlacementProposal[] = ordered.map((c, i) => {
    const p: PlacementProposal = {
      rank: i,
      region: c.region,
      lines: c.lines.map((l) => ({ ...l, box: round2Box(l.box) })),
      score: round4(c.score),
      components: { ...c.components },
      rejected: c.rejected,
      anchor: c.anchor,
    };
    if (c.canvas) p.canvas = c.canvas;
    return p;
  });
  return { proposals, chosen: 0 };
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

function gapBetween(a: Box, b: Box): number {
  const dx = Math.max(0, Math.max(a.x, b.x) - Math.min(a.x + a.w, b.x + b.w));
  const dy = Math.max(0, Math.max(a.y, b.y) - Math.min(a.y + a.h, b.y + b.h));
  return Math.hypot(dx, dy);
}

function round4(v: number): number {
  return Math.round(v * 10000) / 10000;
}

function round2Box(b: Box): Box {
  return {
    x: Math.round(b.x * 100) / 100,
    y: Math.round(b.y * 100) / 100,
    w: Math.round(b.w * 100) / 100,
    h: Math.round(b.h * 100) / 100,
  };
}

/**
 * The k-th variant (creation_order k, 1-based) takes the k-th ranked valid
 * proposal, wrapping around when there are fewer valid proposals than
 * variants. Returns an index into plan.proposals; 0 when none is valid.
 */
export function chooseProposalForVariant(plan: PlanResult, creationOrder: number): number {
  const validIdx = plan.proposals.map((p, i) => (p.rejected ? -1 : i)).filter((i) => i >= 0);
  if (validIdx.length === 0) return 0;
  const k = Math.max(1, Math.floor(Number.isFinite(creationOrder) ? creationOrder : 1));
  return validIdx[(k - 1) % validIdx.length]!;
}

/**
 * Colour treatment of the k-th variant:
 * 1 = white text on a dark translucent panel, 2 = near-black text on a light
 * panel, 3 = white (or near-black) text on a panel in the photo's own accent
 * colour (from the dominant colours, darkened or lightened until the text
 * keeps >= 7:1 contrast against it), then the cycle repeats.
 */
export function treatmentForVariant(creationOrder: number, img: RasterImage, analysis?: ImageAnalysis): TextTreatment {
  const k = Math.max(1, Math.floor(Number.isFinite(creationOrder) ? creationOrder : 1));
  const which = (k - 1) % 3;
  if (which === 0) return { name: 'dark-panel', textColor: '#ffffff', underlay: 'rgba(18,18,20,0.8)', shadow: false };
  if (which === 1)
    return { name: 'light-panel', textColor: '#17171a', underlay: 'rgba(255,255,255,0.9)', shadow: false };
  const hexes = analysis?.dominantColors?.length ? analysis.dominantColors : dominantColors(img, 5).map((c) => c.hex);
  // The most saturated of the dominant colours carries the brand feel.
  let best: Rgb | null = null;
  let bestSat = -1;
  for (const hex of hexes) {
    let rgb: Rgb;
    try {
      rgb = parseColor(hex).rgb;
    } catch {
      continue;
    }
    const [, s, l] = rgbToHsl(rgb);
    const sat = s * (1 - Math.abs(2 * l - 1));
    if (sat > bestSat) {
      bestSat = sat;
      best = rgb;
    }
  }
  const base: Rgb = best ?? [40, 40, 48];
  const [h, s0, l0] = rgbToHsl(base);
  const s = Math.min(0.75, Math.max(0.25, s0));
  const white: Rgb = [255, 255, 255];
  // Darken until white text reaches 7:1 even after 8% of a white photo shows through.
  let l = Math.min(l0, 0.45);
  let panel = hslToRgb(h, s, l);
  const shows = (p: Rgb): Rgb => p.map((v) => 0.92 * v + 0.08 * 255) as Rgb;
  while (contrastOfColors(white, shows(panel)) < 7 && l > 0.05) {
    l -= 0.02;
    panel = hslToRgb(h, s, l);
  }
  return { name: 'brand-panel', textColor: '#ffffff', underlay: rgba(panel, 0.92), shadow: false };
}

/** Clips a region to the image (for callers that want the in-photo part). */
export function clipToImage(b: Box, img: RasterImage): Box {
  return clipBox(b, img.width, img.height);
}

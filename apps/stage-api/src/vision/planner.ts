/**
 * planner: where the text block goes, in three parts (./planner/):
 *
 * - candidates.ts: anchors (corners, top/bottom/middle bands, centre, and the
 *   free bands beside the detected objects) x margins x headline sizes x line
 *   widths, each typeset with the real font (balanced breaks, headline <= 3
 *   lines, tagline <= 2); caption bands that extend the canvas when the
 *   objects leave no room inside the photo; a last-resort band;
 * - scoring.ts: the hard rule (the whole panel, glyphs and padding, never
 *   overlaps an object box dilated by a margin; such candidates are kept with
 *   the reason) and the score of the valid ones, measured on a downscaled copy;
 * - choice.ts: the order of the proposals and the k-th variant's choice.
 *
 * Bands are only proposed when fewer than three clean in-photo placements
 * exist, so the text never covers the product; the last resort only when
 * nothing else is valid.
 */
import { dominantColors } from './analyze.js';
import {
  bandCandidates,
  type Candidate,
  inPhotoCandidates,
  lastResortCandidate,
  type Scene,
} from './planner/candidates.js';
import { rankProposals } from './planner/choice.js';
import { measure, scoreBand, scoreInPhoto, scoreLastResort } from './planner/scoring.js';
import { clipBox, contrastOfColors, dilate, hslToRgb, parseColor, type Rgb, rgba, rgbToHsl } from './raster.js';
import type { AdTexts, Box, Detection, ImageAnalysis, PlanResult, RasterImage, TextTreatment } from './types.js';

export { chooseProposalForVariant } from './planner/choice.js';

export interface PlanOptions {
  /** Dilation of every object box, as a fraction of the shorter image side (default 0.05). */
  objectMargin?: number;
  /** Most proposals returned (valid first, then rejected); default: all of them. */
  maxProposals?: number;
  /** Allow caption-band proposals that extend the canvas (default true). */
  allowBands?: boolean;
}

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
  const scene: Scene = { W, H, m, objects };
  const measured = measure(img);

  const cands: Candidate[] = inPhotoCandidates(scene, texts);
  scoreInPhoto(cands, scene, measured, objMargin);

  // Caption bands when fewer than three clean in-photo placements exist.
  const validInPhoto = cands.filter((c) => !c.rejected).length;
  if ((opts.allowBands ?? true) && validInPhoto < 3) {
    for (const { candidate, side, hs } of bandCandidates(scene, texts)) {
      scoreBand(candidate, side, hs, m);
      cands.push(candidate);
    }
  }

  // Last resort (tiny photos, very long copy) when nothing is valid.
  if (!cands.some((c) => !c.rejected)) {
    const last = lastResortCandidate(scene, texts);
    if (last) {
      scoreLastResort(last.candidate, last.size, m);
      cands.push(last.candidate);
    }
  }

  return { proposals: rankProposals(cands, opts.maxProposals), chosen: 0 };
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

/**
 * overlay: draws the creative with @napi-rs/canvas and Pretendard.
 * The photo is drawn unchanged; the text block sits on a rounded translucent
 * panel (in-photo placements) or on a solid caption band (band placements,
 * where the canvas is extended); lines are drawn exactly where the planner
 * measured them and their tight glyph boxes are reported as drawn.
 *
 * Bounds (docs/stage-api.md, "Rendering bounds"): the canvas is at most
 * MAX_CANVAS_SIDE on each side (a larger plan is scaled down as a whole:
 * photo, boxes and type), and at most MAX_TEXT_LINES lines are drawn (a plan
 * with more, or with a line wider than the canvas, is typeset again in its
 * region with over-wide words broken and overflow ellipsised).
 */
import { createCanvas, ImageData } from '@napi-rs/canvas';
import sharp from 'sharp';
import { ensureFonts, FONT_FAMILY, fontSpec, measureLine } from './fonts.js';
import { MAX_CANVAS_SIDE, MAX_TEXT_LINES, panelMetrics, typesetBlock, type Align } from './layout.js';
import { parseColor, rgba } from './raster.js';
import type {
  AdTexts,
  Box,
  CreativeLayout,
  PlacementProposal,
  RasterImage,
  RenderedLine,
  RenderResult,
  TextTreatment,
} from './types.js';

const HANGUL = /[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]/;

export function lineLanguage(text: string): 'eng' | 'kor' {
  return HANGUL.test(text) ? 'kor' : 'eng';
}

const norm = (s: string): string => s.normalize('NFC').replace(/\s+/g, ' ').trim();

/** The proposal and photo scaled by `s` (canvas, region, line boxes, type sizes). */
async function scalePlan(
  img: RasterImage,
  proposal: PlacementProposal,
  s: number,
): Promise<{ img: RasterImage; proposal: PlacementProposal }> {
  const width = Math.max(1, Math.round(img.width * s));
  const height = Math.max(1, Math.round(img.height * s));
  const { data, info } = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), {
    raw: { width: img.width, height: img.height, channels: 4 },
  })
    .resize(width, height, { fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const box = (b: Box): Box => ({ x: b.x * s, y: b.y * s, w: b.w * s, h: b.h * s });
  const scaled: PlacementProposal = {
    ...proposal,
    region: box(proposal.region),
    lines: proposal.lines.map((l) => ({ ...l, box: box(l.box), fontSize: Math.max(1, l.fontSize * s) })),
  };
  if (proposal.canvas) {
    scaled.canvas = {
      width: Math.min(MAX_CANVAS_SIDE, Math.max(width, Math.round(proposal.canvas.width * s))),
      height: Math.min(MAX_CANVAS_SIDE, Math.max(height, Math.round(proposal.canvas.height * s))),
    };
  }
  return {
    img: { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) },
    proposal: scaled,
  };
}

export async function renderCreative(
  photo: RasterImage,
  plan: PlacementProposal,
  texts: AdTexts,
  treatment: TextTreatment,
): Promise<RenderResult> {
  ensureFonts();
  if (!plan || !Array.isArray(plan.lines) || plan.lines.length === 0) {
    throw new TypeError('renderCreative needs a proposal with at least one line');
  }
  let img = photo;
  let proposal = plan;
  const planW = proposal.canvas?.width ?? img.width;
  const planH = proposal.canvas?.height ?? img.height;
  if (planW > MAX_CANVAS_SIDE || planH > MAX_CANVAS_SIDE) {
    ({ img, proposal } = await scalePlan(img, proposal, Math.min(MAX_CANVAS_SIDE / planW, MAX_CANVAS_SIDE / planH)));
  }
  const textColor = parseColor(treatment.textColor);
  const cw = proposal.canvas?.width ?? img.width;
  const ch = proposal.canvas?.height ?? img.height;
  const isBand = cw !== img.width || ch !== img.height;

  // Use the planned lines when they carry exactly the texts and stay within the
  // bounds; otherwise re-typeset the given texts into the planned region with
  // the planned sizes.
  let lines = proposal.lines;
  const outOfBounds =
    lines.length > MAX_TEXT_LINES || lines.some((l) => l.box.x + l.box.w > cw + 1 || l.box.y + l.box.h > ch + 1);
  const planned = (role: 'headline' | 'tagline'): string =>
    norm(
      proposal.lines
        .filter((l) => l.role === role)
        .map((l) => l.text)
        .join(' '),
    );
  if (outOfBounds || planned('headline') !== norm(texts.headline) || planned('tagline') !== norm(texts.tagline ?? '')) {
    const hs = proposal.lines.find((l) => l.role === 'headline')?.fontSize ?? 32;
    const ts = proposal.lines.find((l) => l.role === 'tagline')?.fontSize ?? Math.round(hs * 0.56);
    const anchor = proposal.anchor ?? '';
    const align: Align = anchor.endsWith('left') ? 'left' : anchor.endsWith('right') && !isBand ? 'right' : 'center';
    const block = typesetBlock(texts, {
      headlineSize: hs,
      taglineSize: ts,
      headlineWeight: proposal.lines[0]!.fontWeight,
      taglineWeight: proposal.lines.find((l) => l.role === 'tagline')?.fontWeight ?? 600,
      align,
      maxWidth: Math.max(
        1,
        Math.min(Math.max(proposal.region.w - 2 * panelMetrics(hs).padX, hs * 4), cw - 2 * panelMetrics(hs).padX),
      ),
      maxHeadlineLines: texts.tagline?.trim() ? MAX_TEXT_LINES - 2 : MAX_TEXT_LINES,
      maxTaglineLines: 2,
      overflow: 'ellipsis',
    });
    if (!block) throw new Error('the texts do not fit the planned region');
    lines = block.lines.map((l) => ({
      role: l.role,
      text: l.text,
      fontSize: l.fontSize,
      fontWeight: l.fontWeight,
      box: { x: proposal.region.x + l.box.x, y: proposal.region.y + l.box.y, w: l.box.w, h: l.box.h },
    }));
  }

  const canvas = createCanvas(cw, ch);
  const ctx = canvas.getContext('2d');
  const bandColour = isBand
    ? treatment.underlay
      ? parseColor(treatment.underlay).rgb
      : contrastingBand(textColor.rgb)
    : null;
  if (bandColour) {
    // Solid band (the underlay colour made opaque) everywhere outside the photo.
    ctx.fillStyle = rgba(bandColour, 1);
    ctx.fillRect(0, 0, cw, ch);
  }
  ctx.putImageData(
    new ImageData(new Uint8ClampedArray(img.data.buffer, img.data.byteOffset, img.data.length), img.width, img.height),
    0,
    0,
  );

  const headlineSize = lines.find((l) => l.role === 'headline')?.fontSize ?? lines[0]!.fontSize;
  const { radius } = panelMetrics(headlineSize);
  let underlayBox: Box | null = null;
  if (isBand) {
    // Solid band over the extension (the underlay colour made opaque).
    const band: Box =
      ch > img.height
        ? { x: 0, y: img.height, w: cw, h: ch - img.height }
        : { x: img.width, y: 0, w: cw - img.width, h: ch };
    const colour = treatment.underlay ? parseColor(treatment.underlay).rgb : contrastingBand(textColor.rgb);
    ctx.fillStyle = rgba(colour, 1);
    ctx.fillRect(band.x, band.y, band.w, band.h);
    underlayBox = band;
  } else if (treatment.underlay) {
    const r = proposal.region;
    ctx.fillStyle = treatment.underlay;
    ctx.beginPath();
    ctx.roundRect(r.x, r.y, r.w, r.h, radius);
    ctx.fill();
    underlayBox = { ...r };
  }

  const drawn: RenderedLine[] = [];
  ctx.textBaseline = 'alphabetic';
  ctx.textAlign = 'left';
  for (const line of lines) {
    const m = measureLine(line.text, line.fontSize, line.fontWeight);
    const x = line.box.x + m.left;
    const baseline = line.box.y + m.ascent;
    ctx.font = fontSpec(line.fontSize, line.fontWeight);
    if (treatment.shadow) {
      ctx.shadowColor = 'rgba(0,0,0,0.55)';
      ctx.shadowBlur = Math.max(2, line.fontSize * 0.12);
      ctx.shadowOffsetY = Math.max(1, line.fontSize * 0.04);
    }
    ctx.fillStyle = treatment.textColor;
    ctx.fillText(line.text, x, baseline);
    ctx.shadowColor = 'rgba(0,0,0,0)';
    ctx.shadowBlur = 0;
    ctx.shadowOffsetY = 0;
    drawn.push({
      role: line.role,
      text: line.text,
      lang: lineLanguage(line.text),
      box: {
        x: round2(x - m.left),
        y: round2(baseline - m.ascent),
        w: round2(m.left + m.right),
        h: round2(m.ascent + m.descent),
      },
      fontSize: line.fontSize,
      fontWeight: line.fontWeight,
      fontFamily: FONT_FAMILY,
      color: treatment.textColor,
    });
  }

  // sharp's PNG encoder (zlib-ng) is several times faster than the canvas's on
  // photographic content; the creative is opaque, so RGB is enough.
  const pixels = ctx.getImageData(0, 0, cw, ch).data;
  const png = await sharp(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength), {
    raw: { width: cw, height: ch, channels: 4 },
  })
    .removeAlpha()
    .png({ compressionLevel: 6 })
    .toBuffer();
  const layout: CreativeLayout = { width: cw, height: ch, treatment, lines: drawn, underlayBox };
  return { png, layout };
}

function contrastingBand(text: [number, number, number]): [number, number, number] {
  const lum = 0.299 * text[0] + 0.587 * text[1] + 0.114 * text[2];
  return lum > 128 ? [18, 18, 20] : [250, 250, 250];
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

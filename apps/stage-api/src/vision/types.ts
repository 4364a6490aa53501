/**
 * The contract between the stage server (HTTP, database, state machine:
 * src/app.ts, src/stages/*) and the creative engine (pure functions over
 * image bytes: src/vision/*). Everything here is plain data, so any of it can
 * cross a worker-thread boundary.
 */

/** Axis-aligned box in image pixels. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** A decoded image: raw RGBA, 8 bits per channel, row-major. */
export interface RasterImage {
  width: number;
  height: number;
  /** width * height * 4 bytes */
  data: Uint8Array;
}

/** Which method produced a stored result (stored beside every result). */
export type Method =
  | 'vlm'
  | 'heuristic'
  | 'yolo'
  | 'saliency'
  | 'llm'
  | 'template'
  | 'input'
  | 'tesseract'
  | 'measured';

export interface ImageAnalysis {
  usable: boolean;
  description: string;
  /** Hex colours, most dominant first (3-6). */
  dominantColors: string[];
  problems: string[];
  /** Measured values (sharpness, exposure, colourfulness, ...) when heuristic. */
  metrics?: Record<string, number>;
}

export interface Detection {
  label: string;
  /** COCO class id for YOLO, -1 for saliency. */
  classId: number;
  score: number;
  box: Box;
}

export interface AdTexts {
  /** English headline (always present). */
  headline: string;
  /** Korean tagline, when the job's inputs carry one. */
  tagline?: string | undefined;
}

/** One candidate placement of the text block. */
export interface PlacementProposal {
  rank: number;
  /** Region holding the whole text block. */
  region: Box;
  /** Per-line boxes, in the order of AdTexts (headline first). */
  lines: Array<{ role: 'headline' | 'tagline'; text: string; box: Box; fontSize: number; fontWeight: number }>;
  score: number;
  /** Score components (clutter, contrast, margin, ...), for the analyzer. */
  components: Record<string, number>;
  /** Why it was rejected (overlaps an object, out of bounds, ...), or null when valid. */
  rejected: string | null;
  /** Where the block sits (top-left, bottom-center, band-bottom, ...). */
  anchor?: string;
  /**
   * Set for caption-band placements: the creative's canvas is extended beyond
   * the photo (which stays at 0,0) and the text sits on a solid band there.
   */
  canvas?: { width: number; height: number };
}

export interface PlanResult {
  proposals: PlacementProposal[];
  /** Index into proposals of the chosen one for this variant. */
  chosen: number;
}

export interface TextTreatment {
  name: string;
  textColor: string;
  /** Underlay (panel/gradient) colour with alpha, or null. */
  underlay: string | null;
  shadow: boolean;
}

export interface RenderedLine {
  role: 'headline' | 'tagline';
  text: string;
  lang: 'eng' | 'kor';
  box: Box;
  fontSize: number;
  fontWeight: number;
  fontFamily: string;
  color: string;
}

export interface CreativeLayout {
  width: number;
  height: number;
  treatment: TextTreatment;
  lines: RenderedLine[];
  /** The underlay panel drawn behind the text, if any. */
  underlayBox: Box | null;
}

export interface RenderResult {
  png: Buffer;
  layout: CreativeLayout;
}

export interface OcrLineResult {
  role: 'headline' | 'tagline';
  lang: 'eng' | 'kor';
  expected: string;
  read: string;
  /** Character error rate on NFC-normalised, whitespace-collapsed text. */
  cer: number;
  confidence: number;
}

export interface ReadabilityLineResult {
  role: 'headline' | 'tagline';
  /** WCAG contrast ratio between the text colour and a low percentile of the background around the glyphs. */
  contrastP5: number;
  contrastMedian: number;
  /** Edge density under the box, 0..1. */
  clutter: number;
  pass: boolean;
}

export interface ReadabilityResult {
  lines: ReadabilityLineResult[];
  thresholds: { minContrast: number; maxClutter: number; percentile: number };
  pass: boolean;
}

export interface IouPair {
  /** 'underlay' for the panel or band drawn behind the text. */
  role: 'headline' | 'tagline' | 'underlay';
  /** Index of the line in layout.lines (-1 for the underlay). */
  line?: number;
  label: string;
  iou: number;
  /** Intersection over the text box area. */
  ioText: number;
}

export interface IouResult {
  pairs: IouPair[];
  maxIou: number;
  maxIoText: number;
}

export interface Judgement {
  /** 0..10 */
  score: number;
  problems: string[];
  rationale: string;
}

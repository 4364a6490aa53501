export { analyzeImageHeuristic, dominantColors, ANALYSIS_THRESHOLDS } from './analyze.js';
export {
  decodeImage,
  encodePng,
  ImageError,
  type ImageErrorCode,
  SUPPORTED_FORMATS,
  DEFAULT_MAX_PIXELS,
} from './decode.js';
export { iouEvaluate, readabilityEvaluate, READABILITY_THRESHOLDS } from './evaluate.js';
export { composeFeedImage, FEED_HEIGHT, FEED_WIDTH } from './feed.js';
export { ensureFonts, FONT_FAMILY, measureLine } from './fonts.js';
export { judgeHeuristic } from './judge.js';
export { characterErrorRate, createOcrEngine, levenshtein, normaliseForCer, type OcrEngine } from './ocr.js';
export { chooseProposalForVariant, planPlacements, type PlanOptions, treatmentForVariant } from './planner.js';
export { lineLanguage, renderCreative } from './render.js';
export { detectSaliency, saliencyMap } from './saliency.js';
export { scoreVariant } from './score.js';
export type * from './types.js';
export {
  COCO_CLASSES,
  decodeYoloEndToEnd,
  decodeYoloRaw,
  letterbox,
  type LetterboxInfo,
  nms,
  type RawDetection,
  unletterbox,
  YoloDetector,
  type YoloLoadOptions,
} from './yolo.js';

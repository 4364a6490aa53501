/**
 * The ten stages, one file each (what it reads, which backend or fallback it
 * uses, what it stores, its SQL next to its reads); what they share is
 * common.ts. The state machine around them is runner.ts; the algorithms are
 * ../vision and ../text. Every model call, worker task and OCR run carries
 * the request's AbortSignal and deadline (docs/stage-api.md, "Deadline").
 */
import type { Step } from '@feedlyai/pipeline-core';
import { adCopyKor } from './ad-copy-kor.js';
import { instagramFeed } from './instagram-feed.js';
import { iouEval } from './iou-eval.js';
import { ocrEval } from './ocr-eval.js';
import { overlay } from './overlay.js';
import { planner } from './planner.js';
import { readabilityEval } from './readability-eval.js';
import type { StageDefinition, StageOutput } from './runner.js';
import { vlmAnalyze } from './vlm-analyze.js';
import { vlmJudge } from './vlm-judge.js';
import { yoloDetect } from './yolo-detect.js';

export const STAGES: Readonly<Record<Exclude<Step, 'user_img_input' | 'img_gen'>, StageDefinition>> = {
  vlm_analyze: vlmAnalyze,
  yolo_detect: yoloDetect,
  planner,
  overlay,
  vlm_judge: vlmJudge,
  ocr_eval: ocrEval,
  readability_eval: readabilityEval,
  iou_eval: iouEval,
  ad_copy_gen_kor: adCopyKor,
  instagram_feed_gen: instagramFeed,
};

export type { StageOutput };

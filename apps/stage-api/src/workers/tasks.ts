/**
 * The CPU-heavy image work of the stages, as plain-data functions (bytes in,
 * plain objects out) so that each can run in a worker thread (cpu-worker.ts)
 * or inline. The algorithms themselves live in ../vision (the creative
 * engine); this file only chains them.
 */
import {
  analyzeImageHeuristic,
  chooseProposalForVariant,
  decodeImage,
  detectSaliency,
  judgeHeuristic,
  planPlacements,
  readabilityEvaluate,
  renderCreative,
  treatmentForVariant,
} from '../vision/index.js';
import type {
  AdTexts,
  CreativeLayout,
  Detection,
  ImageAnalysis,
  Judgement,
  PlacementProposal,
  PlanResult,
  ReadabilityResult,
  TextTreatment,
} from '../vision/types.js';

export interface ImageInfo {
  width: number;
  height: number;
}

export const cpuTasks = {
  async probe(bytes: Uint8Array): Promise<ImageInfo> {
    const img = await decodeImage(bytes);
    return { width: img.width, height: img.height };
  },

  async analyze(bytes: Uint8Array): Promise<ImageAnalysis & ImageInfo> {
    const img = await decodeImage(bytes);
    return { ...analyzeImageHeuristic(img), width: img.width, height: img.height };
  },

  async saliency(bytes: Uint8Array): Promise<{ detections: Detection[] } & ImageInfo> {
    const img = await decodeImage(bytes);
    return { detections: detectSaliency(img), width: img.width, height: img.height };
  },

  async plan(
    bytes: Uint8Array,
    detections: Detection[],
    texts: AdTexts,
    creationOrder: number,
  ): Promise<PlanResult & ImageInfo> {
    const img = await decodeImage(bytes);
    const plan = planPlacements(img, detections, texts);
    const chosen = chooseProposalForVariant(plan, creationOrder);
    return { proposals: plan.proposals, chosen, width: img.width, height: img.height };
  },

  async render(
    bytes: Uint8Array,
    proposal: PlacementProposal,
    texts: AdTexts,
    creationOrder: number,
    analysis: ImageAnalysis | undefined,
  ): Promise<{ png: Uint8Array; layout: CreativeLayout; treatment: TextTreatment }> {
    const img = await decodeImage(bytes);
    const treatment = treatmentForVariant(creationOrder, img, analysis);
    const out = await renderCreative(img, proposal, texts, treatment);
    return { png: out.png, layout: out.layout, treatment };
  },

  async judge(png: Uint8Array, layout: CreativeLayout, detections: Detection[]): Promise<Judgement> {
    const img = await decodeImage(png);
    return judgeHeuristic(img, layout, detections);
  },

  async readability(png: Uint8Array, layout: CreativeLayout): Promise<ReadabilityResult> {
    const img = await decodeImage(png);
    return readabilityEvaluate(img, layout);
  },
};

export type CpuTasks = typeof cpuTasks;
export type CpuTaskName = keyof CpuTasks;

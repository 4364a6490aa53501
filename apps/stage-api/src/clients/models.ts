/**
 * The model backends of the stages: the VLM and the LLM (OpenAI-compatible
 * chat completions), YOLO (onnxruntime-node) and the OCR engine
 * (tesseract.js), each created lazily, each with a CPU fallback decided by
 * configuration (no base URL / no model path). Prompts and answer schemas of
 * the VLM and LLM live here. YOLO and OCR calls are child spans of the stage
 * request (`yolo detect`, `ocr evaluate`; docs/tracing.md), like the chat calls.
 */
import sharp from 'sharp';
import { z } from 'zod';
import type { StageConfig } from '../config.js';
import { buildVlmAnalyzePrompt, buildVlmJudgePrompt, VLM_ANALYZE_SCHEMA, VLM_JUDGE_SCHEMA } from '../text/index.js';
import { withChildSpan } from '../tracing.js';
import type { OcrEngine, YoloDetector } from '../vision/index.js';
import type { CreativeLayout, ImageAnalysis, Judgement } from '../vision/types.js';
import { type CallOptions, type ChatClient, createChatClient } from './chat.js';

/** Longest side of the image sent to the VLM (keeps the data URL small). */
const VLM_MAX_SIDE = 1024;

async function toJpegForModel(bytes: Uint8Array): Promise<Buffer> {
  return await sharp(bytes, { limitInputPixels: 100_000_000 })
    .rotate()
    .resize({ width: VLM_MAX_SIDE, height: VLM_MAX_SIDE, fit: 'inside', withoutEnlargement: true })
    .jpeg({ quality: 88 })
    .toBuffer();
}

const hex = z
  .string()
  .trim()
  .regex(/^#?[0-9a-fA-F]{6}$/)
  .transform((s) => (s.startsWith('#') ? s : `#${s}`).toLowerCase());

export const analysisAnswer = z.object({
  usable: z.boolean(),
  description: z.string().trim().min(1).max(2000),
  dominant_colors: z.array(hex).max(8),
  problems: z.array(z.string().trim().min(1).max(300)).max(20),
});

export const judgementAnswer = z.object({
  score: z.number().min(0).max(10),
  problems: z.array(z.string().trim().min(1).max(300)).max(20),
  rationale: z.string().trim().max(2000),
});

export interface VlmBackend {
  client: ChatClient;
  analyze(image: Uint8Array, opts?: CallOptions): Promise<{ analysis: ImageAnalysis; model: string }>;
  judge(
    creativePng: Uint8Array,
    layout: CreativeLayout,
    opts?: CallOptions,
  ): Promise<{ judgement: Judgement; model: string }>;
}

export function createVlmBackend(client: ChatClient): VlmBackend {
  return {
    client,
    async analyze(image, opts = {}) {
      const jpeg = await toJpegForModel(image);
      const a = await client.completeJson(
        {
          ...buildVlmAnalyzePrompt(),
          image: { bytes: jpeg, mime: 'image/jpeg' },
          schemaName: 'product_photo_analysis',
          jsonSchema: VLM_ANALYZE_SCHEMA,
          validate: analysisAnswer,
        },
        opts,
      );
      return {
        analysis: {
          usable: a.value.usable,
          description: a.value.description,
          dominantColors: a.value.dominant_colors,
          problems: a.value.problems,
        },
        model: a.model,
      };
    },
    async judge(creativePng, layout, opts = {}) {
      const jpeg = await toJpegForModel(creativePng);
      const headline = layout.lines
        .filter((l) => l.role === 'headline')
        .map((l) => l.text)
        .join(' ');
      const tagline = layout.lines
        .filter((l) => l.role === 'tagline')
        .map((l) => l.text)
        .join(' ');
      const a = await client.completeJson(
        {
          ...buildVlmJudgePrompt({ headline, tagline: tagline || undefined }),
          image: { bytes: jpeg, mime: 'image/jpeg' },
          schemaName: 'creative_judgement',
          jsonSchema: VLM_JUDGE_SCHEMA,
          validate: judgementAnswer,
        },
        opts,
      );
      return { judgement: a.value, model: a.model };
    },
  };
}

export interface Backends {
  vlm: VlmBackend | null;
  llm: ChatClient | null;
  yoloModelPath: string | null;
  /** The YOLO detector, loaded on first use (null without YOLO_MODEL_PATH). */
  yolo(): Promise<YoloDetector | null>;
  /** The OCR engine, created on first use. */
  ocr(): Promise<OcrEngine>;
  close(): Promise<void>;
}

export function createBackends(config: StageConfig): Backends {
  const vlm = config.vlm.baseUrl
    ? createVlmBackend(
        createChatClient({
          name: 'VLM',
          baseUrl: config.vlm.baseUrl,
          model: config.vlm.model,
          apiKey: config.vlm.apiKey,
          timeoutMs: config.vlm.timeoutMs,
          maxRetries: config.vlm.maxRetries,
        }),
      )
    : null;
  const llm = config.llm.baseUrl
    ? createChatClient({
        name: 'LLM',
        baseUrl: config.llm.baseUrl,
        model: config.llm.model,
        apiKey: config.llm.apiKey,
        timeoutMs: config.llm.timeoutMs,
        maxRetries: config.llm.maxRetries,
      })
    : null;
  let yolo: Promise<YoloDetector> | null = null;
  let ocr: Promise<OcrEngine> | null = null;
  return {
    vlm,
    llm,
    yoloModelPath: config.yoloModelPath,
    async yolo() {
      if (!config.yoloModelPath) return null;
      yolo ??= import('../vision/index.js')
        .then((v) => v.YoloDetector.load(config.yoloModelPath as string))
        .then(tracedDetector)
        .catch((err: unknown) => {
          yolo = null;
          throw new Error(`cannot load the YOLO model ${config.yoloModelPath}: ${(err as Error).message}`);
        });
      return await yolo;
    },
    async ocr() {
      ocr ??= import('../vision/index.js')
        .then((v) => v.createOcrEngine({ workers: config.ocrWorkers }))
        .then(tracedOcr)
        .catch((err: unknown) => {
          ocr = null;
          throw err;
        });
      return await ocr;
    },
    async close() {
      const y = yolo;
      const o = ocr;
      yolo = null;
      ocr = null;
      await Promise.allSettled([y?.then((d) => d.close()), o?.then((e) => e.close())]);
    },
  };
}

/** The detector, its detect() a child span of the stage request. */
function tracedDetector(d: YoloDetector): YoloDetector {
  const detect = d.detect.bind(d);
  d.detect = (img, opts) =>
    withChildSpan('yolo detect', { 'pipeline.model.backend': 'yolo' }, async (span) => {
      const found = await detect(img, opts);
      span.setAttribute('pipeline.detections', found.length);
      return found;
    });
  return d;
}

/** The OCR engine, its evaluate() a child span of the stage request. */
function tracedOcr(e: OcrEngine): OcrEngine {
  return {
    evaluate: (png, layout, opts) =>
      withChildSpan(
        'ocr evaluate',
        { 'pipeline.model.backend': 'ocr', 'pipeline.ocr.lines': layout.lines.length },
        () => e.evaluate(png, layout, opts),
      ),
    close: () => e.close(),
  };
}

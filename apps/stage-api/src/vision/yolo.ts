/**
 * yolo_detect with a YOLOv8 / YOLO11 ONNX export on onnxruntime-node (CPU).
 *
 * Pre-processing: letterbox to the model's square input (read from the
 * session's input metadata, 640 by default), grey (114) padding, NCHW float32
 * scaled to 0..1. Two output layouts are decoded:
 * - raw `[1, 4 + C, N]` (cx, cy, w, h, then C class scores; no objectness),
 *   followed by class-wise non-maximum suppression;
 * - end-to-end `[1, N, 6]` (x1, y1, x2, y2, score, class), already suppressed.
 * Boxes are mapped back through the letterbox to image pixels and clipped.
 */
import * as ort from 'onnxruntime-node';
import { clipBox, iou } from './raster.js';
import type { Box, Detection, RasterImage } from './types.js';

// biome-ignore format: a compact table of the 80 COCO class names, in class-id order
export const COCO_CLASSES: readonly string[] = [
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
  'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
  'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
  'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
  'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
  'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
  'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
  'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
  'hair drier', 'toothbrush',
];

/** How the image was placed in the square model input. */
export interface LetterboxInfo {
  /** Model input side. */
  size: number;
  scale: number;
  padX: number;
  padY: number;
  /** Resized image size inside the input. */
  newWidth: number;
  newHeight: number;
}

/**
 * Letterbox the image into a `size` x `size` NCHW float32 tensor (values
 * 0..1, padding grey 114/255), bilinear resampling.
 */
export function letterbox(img: RasterImage, size = 640): { tensor: Float32Array; info: LetterboxInfo } {
  const scale = Math.min(size / img.width, size / img.height);
  const nw = Math.max(1, Math.round(img.width * scale));
  const nh = Math.max(1, Math.round(img.height * scale));
  const padX = Math.floor((size - nw) / 2);
  const padY = Math.floor((size - nh) / 2);
  const plane = size * size;
  const tensor = new Float32Array(3 * plane).fill(114 / 255);
  const sx = img.width / nw;
  const sy = img.height / nh;
  const d = img.data;
  for (let y = 0; y < nh; y++) {
    const fy = Math.max(0, Math.min(img.height - 1, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(img.height - 1, y0 + 1);
    const wy = fy - y0;
    for (let x = 0; x < nw; x++) {
      const fx = Math.max(0, Math.min(img.width - 1, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(img.width - 1, x0 + 1);
      const wx = fx - x0;
      const o = (y + padY) * size + (x + padX);
      for (let c = 0; c < 3; c++) {
        const a = d[(y0 * img.width + x0) * 4 + c]!;
        const b = d[(y0 * img.width + x1) * 4 + c]!;
        const e = d[(y1 * img.width + x0) * 4 + c]!;
        const f = d[(y1 * img.width + x1) * 4 + c]!;
        const v = (a * (1 - wx) + b * wx) * (1 - wy) + (e * (1 - wx) + f * wx) * wy;
        tensor[c * plane + o] = v / 255;
      }
    }
  }
  return { tensor, info: { size, scale, padX, padY, newWidth: nw, newHeight: nh } };
}

/** Maps a box from model-input coordinates back to image pixels, clipped to the image. */
export function unletterbox(box: Box, info: LetterboxInfo, width: number, height: number): Box {
  return clipBox(
    {
      x: (box.x - info.padX) / info.scale,
      y: (box.y - info.padY) / info.scale,
      w: box.w / info.scale,
      h: box.h / info.scale,
    },
    width,
    height,
  );
}

/** A detection in model-input coordinates before mapping back. */
export interface RawDetection {
  classId: number;
  score: number;
  box: Box;
}

/** Greedy non-maximum suppression, per class. Returns the kept detections, best first. */
export function nms(dets: RawDetection[], iouThreshold = 0.45, maxDetections = 300): RawDetection[] {
  const sorted = dets.slice().sort((a, b) => b.score - a.score);
  const kept: RawDetection[] = [];
  for (const d of sorted) {
    if (kept.length >= maxDetections) break;
    if (kept.some((k) => k.classId === d.classId && iou(k.box, d.box) > iouThreshold)) continue;
    kept.push(d);
  }
  return kept;
}

/**
 * Decodes a raw YOLOv8/YOLO11 head `[1, 4 + C, N]` (channel-major: row c holds
 * attribute c of every anchor) into detections above `scoreThreshold`, then
 * class-wise NMS. Coordinates stay in model-input pixels.
 */
export function decodeYoloRaw(
  data: ArrayLike<number>,
  dims: readonly number[],
  opts: { scoreThreshold?: number; iouThreshold?: number } = {},
): RawDetection[] {
  if (dims.length !== 3 || dims[0] !== 1 || dims[1]! < 5) {
    throw new Error(`expected a raw YOLO output [1, 4 + classes, N], got [${dims.join(', ')}]`);
  }
  const channels = dims[1]!;
  const n = dims[2]!;
  if (data.length !== channels * n) throw new Error('YOLO output size does not match its dims');
  const thr = opts.scoreThreshold ?? 0.25;
  const classes = channels - 4;
  const out: RawDetection[] = [];
  for (let i = 0; i < n; i++) {
    let best = -1;
    let bestScore = thr;
    for (let c = 0; c < classes; c++) {
      const s = data[(4 + c) * n + i]!;
      if (s > bestScore) {
        bestScore = s;
        best = c;
      }
    }
    if (best < 0) continue;
    const cx = data[i]!;
    const cy = data[n + i]!;
    const w = data[2 * n + i]!;
    const h = data[3 * n + i]!;
    out.push({ classId: best, score: bestScore, box: { x: cx - w / 2, y: cy - h / 2, w, h } });
  }
  return nms(out, opts.iouThreshold ?? 0.45);
}

/** Decodes an end-to-end export `[1, N, 6]` (x1, y1, x2, y2, score, class) above `scoreThreshold`. */
export function decodeYoloEndToEnd(
  data: ArrayLike<number>,
  dims: readonly number[],
  opts: { scoreThreshold?: number } = {},
): RawDetection[] {
  if (dims.length !== 3 || dims[0] !== 1 || dims[2] !== 6) {
    throw new Error(`expected an end-to-end YOLO output [1, N, 6], got [${dims.join(', ')}]`);
  }
  const n = dims[1]!;
  if (data.length !== n * 6) throw new Error('YOLO output size does not match its dims');
  const thr = opts.scoreThreshold ?? 0.25;
  const out: RawDetection[] = [];
  for (let i = 0; i < n; i++) {
    const o = i * 6;
    const score = data[o + 4]!;
    if (!(score >= thr)) continue;
    const x1 = data[o]!;
    const y1 = data[o + 1]!;
    const x2 = data[o + 2]!;
    const y2 = data[o + 3]!;
    out.push({
      classId: Math.round(data[o + 5]!),
      score,
      box: { x: Math.min(x1, x2), y: Math.min(y1, y2), w: Math.abs(x2 - x1), h: Math.abs(y2 - y1) },
    });
  }
  return out.sort((a, b) => b.score - a.score);
}

export interface YoloLoadOptions {
  /** Input side when the model's input shape is dynamic (default 640). */
  inputSize?: number;
  /** Class names (default COCO-80). */
  classNames?: readonly string[];
  /** onnxruntime intra-op threads (default 1: the server bounds concurrency itself). */
  threads?: number;
}

export class YoloDetector {
  private closed = false;
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputName: string,
    readonly outputName: string,
    readonly inputSize: number,
    readonly classNames: readonly string[],
  ) {}

  static async load(modelPath: string, opts: YoloLoadOptions = {}): Promise<YoloDetector> {
    const threads = opts.threads ?? 1;
    const session = await ort.InferenceSession.create(modelPath, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
    const inputName = session.inputNames[0];
    const outputName = session.outputNames[0];
    if (!inputName || !outputName) {
      await session.release();
      throw new Error(`the model ${modelPath} has no input or no output`);
    }
    let size = opts.inputSize ?? 640;
    const meta = session.inputMetadata?.[0];
    if (meta?.isTensor) {
      const shape = meta.shape;
      const h = shape[2];
      const w = shape[3];
      if (typeof h === 'number' && typeof w === 'number' && h > 0 && w > 0) {
        if (h !== w) {
          await session.release();
          throw new Error(`only square model inputs are supported, got ${w}x${h}`);
        }
        size = h;
      }
    }
    return new YoloDetector(session, inputName, outputName, size, opts.classNames ?? COCO_CLASSES);
  }

  async detect(img: RasterImage, opts: { scoreThreshold?: number; iouThreshold?: number } = {}): Promise<Detection[]> {
    if (this.closed) throw new Error('the YOLO detector is closed');
    const { tensor, info } = letterbox(img, this.inputSize);
    const input = new ort.Tensor('float32', tensor, [1, 3, this.inputSize, this.inputSize]);
    const results = await this.session.run({ [this.inputName]: input });
    const output = results[this.outputName];
    if (!output) throw new Error(`the model returned no '${this.outputName}' output`);
    const dims = output.dims;
    const data = output.data as Float32Array;
    const raw =
      dims.length === 3 && dims[2] === 6 && dims[1] !== 6
        ? decodeYoloEndToEnd(data, dims, opts)
        : decodeYoloRaw(data, dims, opts);
    const out: Detection[] = [];
    for (const d of raw) {
      const box = unletterbox(d.box, info, img.width, img.height);
      if (box.w <= 0 || box.h <= 0) continue;
      out.push({
        label: this.classNames[d.classId] ?? `class_${d.classId}`,
        classId: d.classId,
        score: Math.round(d.score * 10000) / 10000,
        box: {
          x: Math.round(box.x * 100) / 100,
          y: Math.round(box.y * 100) / 100,
          w: Math.round(box.w * 100) / 100,
          h: Math.round(box.h * 100) / 100,
        },
      });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}

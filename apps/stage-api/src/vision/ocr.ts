/**
 * ocr_eval: tesseract.js (LSTM) on each rendered line, offline, with the eng
 * and kor models from @tesseract.js-data. One worker (or `workers`) per
 * language stays alive in the engine and is reused across calls.
 *
 * Each line box is cropped with padding, turned grey (inverted when the text
 * is lighter than its background, so tesseract always sees dark on light),
 * upscaled so the line is ~64px tall, and recognised as a single line.
 *
 * CER = Levenshtein distance (insertions, deletions, substitutions over
 * Unicode code points) / length of the expected text, both NFC-normalised,
 * whitespace runs collapsed to one space and trimmed. Case-sensitive:
 * "coffee" read as "Coffee" is one error. Can exceed 1 when OCR invents text.
 *
 * `evaluate` takes the stage request's AbortSignal (docs/stage-api.md,
 * "Deadline"). tesseract.js cannot cancel one recognition, so when the signal
 * fires during one, the workers of that language are terminated (the next
 * call creates them again) and the call rejects with the signal's reason.
 */
import { createRequire } from 'node:module';
import sharp from 'sharp';
import { createScheduler, createWorker, OEM, PSM, type Scheduler } from 'tesseract.js';
import { parseColor, relativeLuminance } from './raster.js';
import type { CreativeLayout, OcrLineResult } from './types.js';

export interface OcrEngine {
  evaluate(png: Buffer, layout: CreativeLayout, opts?: { signal?: AbortSignal | undefined }): Promise<OcrLineResult[]>;
  close(): Promise<void>;
}

/** Text as compared by the CER: NFC, whitespace collapsed, trimmed. */
export function normaliseForCer(s: string): string {
  return s.normalize('NFC').replace(/\s+/gu, ' ').trim();
}

/** Levenshtein distance over code points. */
export function levenshtein(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  if (x.length === 0) return y.length;
  if (y.length === 0) return x.length;
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  let cur = new Array<number>(y.length + 1);
  for (let i = 1; i <= x.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[y.length]!;
}

/** Character error rate of `read` against `expected` (see the module comment). */
export function characterErrorRate(expected: string, read: string): number {
  const e = normaliseForCer(expected);
  const r = normaliseForCer(read);
  if (e.length === 0) return r.length === 0 ? 0 : 1;
  return levenshtein(e, r) / Array.from(e).length;
}

function langData(lang: 'eng' | 'kor'): { langPath: string; gzip: boolean } {
  const require = createRequire(import.meta.url);
  const pkg = require(`@tesseract.js-data/${lang}`) as { langPath: string; gzip: boolean };
  return { langPath: pkg.langPath, gzip: pkg.gzip };
}

export async function createOcrEngine(opts: { workers?: number } = {}): Promise<OcrEngine> {
  const perLang = Math.max(1, Math.min(4, Math.floor(opts.workers ?? 1)));
  // One scheduler (perLang workers) per language, created on first use; every
  // caller awaits the same creation, and a failed creation is forgotten so the
  // next call retries instead of queueing on a scheduler without workers.
  const schedulers = new Map<'eng' | 'kor', Promise<Scheduler>>();
  let closed = false;

  async function createFor(lang: 'eng' | 'kor'): Promise<Scheduler> {
    const scheduler = createScheduler();
    const { langPath, gzip } = langData(lang);
    try {
      for (let i = 0; i < perLang; i++) {
        const worker = await createWorker(lang, OEM.LSTM_ONLY, { langPath, gzip, cacheMethod: 'none' });
        scheduler.addWorker(worker);
        await worker.setParameters({
          tessedit_pageseg_mode: PSM.SINGLE_LINE,
          preserve_interword_spaces: '1',
          user_defined_dpi: '300',
        });
      }
    } catch (err) {
      await scheduler.terminate().catch(() => undefined);
      throw new Error(
        `could not start the tesseract '${lang}' worker: ${err instanceof Error ? err.message : String(err)}`,
        {
          cause: err,
        },
      );
    }
    return scheduler;
  }

  function schedulerFor(lang: 'eng' | 'kor'): Promise<Scheduler> {
    let p = schedulers.get(lang);
    if (!p) {
      p = createFor(lang);
      schedulers.set(lang, p);
      p.catch(() => {
        if (schedulers.get(lang) === p) schedulers.delete(lang);
      });
    }
    return p;
  }

  /** One recognition, abandoned (and the language's workers terminated) when `signal` fires. */
  async function recognise(lang: 'eng' | 'kor', crop: Buffer, signal: AbortSignal | undefined) {
    const created = schedulerFor(lang);
    const job = (await created).addJob('recognize', crop);
    if (!signal) return await job;
    job.catch(() => {});
    return await new Promise<Awaited<typeof job>>((resolve, reject) => {
      const onAbort = () => {
        if (schedulers.get(lang) === created) schedulers.delete(lang);
        created.then((s) => s.terminate()).catch(() => undefined);
        reject(signal.reason);
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      job.then(
        (r) => {
          signal.removeEventListener('abort', onAbort);
          resolve(r);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  return {
    async evaluate(png: Buffer, layout: CreativeLayout, opts = {}): Promise<OcrLineResult[]> {
      if (closed) throw new Error('the OCR engine is closed');
      const signal = opts.signal;
      signal?.throwIfAborted();
      const meta = await sharp(png).metadata();
      const W = meta.width ?? 0;
      const H = meta.height ?? 0;
      const out: OcrLineResult[] = [];
      for (const line of layout.lines) {
        signal?.throwIfAborted();
        const pad = Math.max(4, Math.round(line.box.h * 0.35));
        // Vertical padding stops halfway to the neighbouring lines so no part of them enters the crop.
        let padTop = pad;
        let padBottom = pad;
        for (const other of layout.lines) {
          if (other === line) continue;
          const overlapX =
            Math.min(line.box.x + line.box.w, other.box.x + other.box.w) - Math.max(line.box.x, other.box.x);
          if (overlapX <= 0) continue;
          const above = line.box.y - (other.box.y + other.box.h);
          if (above >= 0) padTop = Math.min(padTop, Math.max(1, Math.floor(above / 2)));
          const below = other.box.y - (line.box.y + line.box.h);
          if (below >= 0) padBottom = Math.min(padBottom, Math.max(1, Math.floor(below / 2)));
        }
        const x0 = Math.max(0, Math.floor(line.box.x - pad));
        const y0 = Math.max(0, Math.floor(line.box.y - padTop));
        const x1 = Math.min(W, Math.ceil(line.box.x + line.box.w + pad));
        const y1 = Math.min(H, Math.ceil(line.box.y + line.box.h + padBottom));
        if (x1 - x0 < 2 || y1 - y0 < 2) {
          out.push({ role: line.role, lang: line.lang, expected: line.text, read: '', cer: 1, confidence: 0 });
          continue;
        }
        const scale = Math.min(6, Math.max(1, 64 / Math.max(1, line.box.h)));
        const light = relativeLuminance(...parseColor(line.color).rgb) > 0.4;
        let pipeline = sharp(png)
          .extract({ left: x0, top: y0, width: x1 - x0, height: y1 - y0 })
          .greyscale();
        if (light) pipeline = pipeline.negate({ alpha: false });
        const crop = await pipeline
          .resize(Math.round((x1 - x0) * scale), Math.round((y1 - y0) * scale), { kernel: 'lanczos3' })
          .extend({ top: 16, bottom: 16, left: 16, right: 16, extendWith: 'copy' })
          .png()
          .toBuffer();
        const res = await recognise(line.lang, crop, signal);
        const read = normaliseForCer(res.data.text ?? '');
        out.push({
          role: line.role,
          lang: line.lang,
          expected: line.text,
          read,
          cer: Math.round(characterErrorRate(line.text, read) * 10000) / 10000,
          confidence: Math.round((res.data.confidence ?? 0) * 100) / 100,
        });
      }
      return out;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const pending = [...schedulers.values()];
      schedulers.clear();
      await Promise.all(pending.map((p) => p.then((s) => s.terminate()).catch(() => undefined)));
    },
  };
}

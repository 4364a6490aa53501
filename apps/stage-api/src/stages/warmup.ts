/**
 * Warm-up at boot (docs/stage-api.md, "Warm-up"): before the server reports
 * ready, everything the first stage calls would otherwise pay for is loaded
 * and run once on a small synthetic photo:
 *
 * - `cpu`: every worker thread of the CPU pool started, with the creative
 *   engine loaded in it (sharp, @napi-rs/canvas, the Pretendard fonts) and
 *   each CPU task run once (analyse, saliency, plan, render, judge,
 *   readability);
 * - `ocr`: the tesseract.js workers of both languages (eng, kor) created and
 *   one line of each recognised;
 * - `yolo`: with YOLO_MODEL_PATH, the ONNX session loaded and run once;
 * - `database`: a few pooled connections opened;
 * - `main`: the creative engine and sharp on the main thread (the IoU and
 *   the feed image run there).
 *
 * The parts run side by side, bounded by a timeout. A part that fails is
 * reported (`/healthz`, the log) and left to load on first use, as without
 * warm-up; it never stops the server.
 */
import sharp from 'sharp';
import type { CreativeLayout, RenderedLine } from '../vision/types.js';
import type { StageContext } from './runner.js';

export type WarmupPartName = 'cpu' | 'ocr' | 'yolo' | 'database' | 'main';

export interface WarmupPart {
  ok: boolean;
  ms: number;
  error?: string;
}

export interface WarmupStatus {
  /** Whether this server warms up at boot (buildApp's `warm` option). */
  enabled: boolean;
  /** off: not enabled; running; done: every part warmed; failed: at least one part failed (loaded on first use). */
  state: 'off' | 'pending' | 'running' | 'done' | 'failed';
  /** True once warm-up has ended (done or failed). */
  finished: boolean;
  ms: number | null;
  parts: Partial<Record<WarmupPartName, WarmupPart>>;
}

const TEXTS = { headline: 'Fresh morning', tagline: '오늘의 커피' };

/** A 640x480 photo-like PNG: a gradient with a round object off-centre. */
async function samplePhoto(): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480">
    <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="#e9dcc9"/><stop offset="1" stop-color="#8a6f52"/></linearGradient></defs>
    <rect width="640" height="480" fill="url(#g)"/>
    <circle cx="420" cy="270" r="120" fill="#3b2a1e"/><circle cx="420" cy="270" r="90" fill="#6b4a33"/>
  </svg>`;
  return await sharp(Buffer.from(svg)).png().toBuffer();
}

/**
 * A white image with one dark English and one dark Korean line drawn in the
 * bundled font, and its layout (what ocr_eval reads). Real text: tesseract
 * prints debugging output to stdout when a line holds nothing.
 */
async function sampleLines(): Promise<{ png: Buffer; layout: CreativeLayout }> {
  const { createCanvas } = await import('@napi-rs/canvas');
  const { ensureFonts, FONT_FAMILY } = await import('../vision/index.js');
  ensureFonts();
  const line = (role: RenderedLine['role'], text: string, lang: RenderedLine['lang'], y: number): RenderedLine => ({
    role,
    text,
    lang,
    box: { x: 20, y, w: 360, h: 40 },
    fontSize: 32,
    fontWeight: 700,
    fontFamily: FONT_FAMILY,
    color: '#111111',
  });
  const lines = [line('headline', TEXTS.headline, 'eng', 20), line('tagline', TEXTS.tagline, 'kor', 100)];
  const canvas = createCanvas(400, 160);
  const g = canvas.getContext('2d');
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, 400, 160);
  g.fillStyle = '#111111';
  g.textBaseline = 'top';
  for (const l of lines) {
    g.font = `${l.fontWeight} ${l.fontSize}px ${FONT_FAMILY}`;
    g.fillText(l.text, l.box.x, l.box.y + 4);
  }
  const png = await canvas.encode('png');
  const layout: CreativeLayout = {
    width: 400,
    height: 160,
    treatment: { name: 'warm-up', textColor: '#111111', underlay: null, shadow: false },
    lines,
    underlayBox: null,
  };
  return { png, layout };
}

export class Warmup {
  private state: WarmupStatus['state'];
  private ms: number | null = null;
  private readonly parts: WarmupStatus['parts'] = {};
  private readonly stopping = new AbortController();
  private running: Promise<WarmupStatus> | null = null;

  constructor(readonly enabled: boolean) {
    this.state = enabled ? 'pending' : 'off';
  }

  status(): WarmupStatus {
    return {
      enabled: this.enabled,
      state: this.state,
      finished: this.state === 'done' || this.state === 'failed',
      ms: this.ms,
      parts: { ...this.parts },
    };
  }

  /** Runs every part side by side; resolves when all ended (never rejects). */
  run(ctx: StageContext, opts: { timeoutMs: number }): Promise<WarmupStatus> {
    if (!this.enabled || this.state !== 'pending') return this.running ?? Promise.resolve(this.status());
    this.running = this.runParts(ctx, opts);
    return this.running;
  }

  /** Stops a warm-up under way (the app closes) and waits until its parts have let go. */
  async stop(): Promise<void> {
    this.stopping.abort(new Error('the server is closing'));
    await this.running;
  }

  private async runParts(ctx: StageContext, opts: { timeoutMs: number }): Promise<WarmupStatus> {
    this.state = 'running';
    const t0 = performance.now();
    const signal = AbortSignal.any([AbortSignal.timeout(opts.timeoutMs), this.stopping.signal]);
    const part = async (name: WarmupPartName, fn: () => Promise<unknown>) => {
      const start = performance.now();
      try {
        await Promise.race([
          fn(),
          new Promise((_, reject) => {
            if (signal.aborted) reject(signal.reason);
            signal.addEventListener('abort', () => reject(signal.reason), { once: true });
          }),
        ]);
        this.parts[name] = { ok: true, ms: Math.round(performance.now() - start) };
      } catch (err) {
        this.parts[name] = {
          ok: false,
          ms: Math.round(performance.now() - start),
          error: err instanceof Error ? err.message : String(err),
        };
      }
    };
    const photo = await samplePhoto();
    const jobs = [
      part('cpu', () => this.cpu(ctx, photo, signal)),
      part('ocr', async () => {
        const { png, layout } = await sampleLines();
        const engine = await ctx.backends.ocr();
        await engine.evaluate(png, layout, { signal });
      }),
      part('database', async () => {
        // Pooled connections opened (their authentication is the slow part), as many as a burst uses at once.
        const clients = await Promise.all(Array.from({ length: 4 }, () => ctx.pool.connect()));
        try {
          await Promise.all(clients.map((c) => c.query('SELECT 1')));
        } finally {
          for (const c of clients) c.release();
        }
      }),
      part('main', async () => {
        const vision = await import('../vision/index.js');
        await vision.composeFeedImage(photo);
      }),
    ];
    if (ctx.config.yoloModelPath) {
      jobs.push(
        part('yolo', async () => {
          const detector = await ctx.backends.yolo();
          const vision = await import('../vision/index.js');
          if (detector) await detector.detect(await vision.decodeImage(photo));
        }),
      );
    }
    await Promise.all(jobs);
    this.ms = Math.round(performance.now() - t0);
    this.state = Object.values(this.parts).every((p) => p.ok) ? 'done' : 'failed';
    return this.status();
  }

  /** Each CPU task once per worker thread (all at once, so that every thread starts), or once inline. */
  private async cpu(ctx: StageContext, photo: Buffer, signal: AbortSignal): Promise<void> {
    const chain = async () => {
      const o = { signal };
      const bytes = new Uint8Array(photo);
      const analysis = await ctx.cpu.run('analyze', [bytes], o);
      const { detections } = await ctx.cpu.run('saliency', [bytes], o);
      const plan = await ctx.cpu.run('plan', [bytes, detections, TEXTS, 1], o);
      const proposal = plan.proposals[plan.chosen];
      if (!proposal) throw new Error('the planner produced no proposal for the warm-up photo');
      const out = await ctx.cpu.run('render', [bytes, proposal, TEXTS, 1, analysis], o);
      const png = new Uint8Array(out.png);
      await ctx.cpu.run('judge', [png, out.layout, detections], o);
      await ctx.cpu.run('readability', [png, out.layout], o);
    };
    await Promise.all(Array.from({ length: Math.max(1, ctx.cpu.threads) }, chain));
  }
}

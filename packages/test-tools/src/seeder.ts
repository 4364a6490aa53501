/**
 * The seeders of seed 003: the background job creator (`seed`) and the
 * YE-part job creator (`seed-ye`). Library functions, so tests and the demo
 * call them directly; src/cli/seed.ts and seed-ye.ts wrap them.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type CappedInput, FINAL_STEP, INPUT_CAPS, inputCapViolations, withTransaction } from '@feedlyai/pipeline-core';
import type { Storage } from '@feedlyai/storage';
import type pg from 'pg';
import { samplePhotoPath } from './assets.js';
import { markImgGenDone, seedJob } from './db/seed.js';

/** What the seeders need of the storage package (`createStorage({ root })`). */
export type StorageLike = Pick<Storage, 'put'>;

export const DEFAULT_TENANT = 'pipeline_test_tenant_v2';
export const DEFAULT_DESC_KOR =
  '산지에서 직접 고른 원두로 내린 핸드드립 커피. 부드러운 산미와 고소한 견과류 향이 어우러져 아침을 깨워 줍니다.';
export const DEFAULT_TONE = 'friendly';
export const DEFAULT_AD_COPY = 'Slow mornings, perfect pour';
export const DEFAULT_TAGLINE = '오늘의 한 잔, 천천히';
export const DEFAULT_PRODUCT_NAME = 'Hand-drip coffee';

export interface JobInputOptions {
  tenantId?: string;
  /** Path of the product image (default: the bundled coffee photo). */
  imagePath?: string;
  descKor?: string;
  tone?: string;
  adCopy?: string;
  tagline?: string;
  productName?: string;
}

/** The seeder option behind each capped input (INPUT_CAPS of pipeline-core, in characters). */
export const JOB_INPUT_OPTION: Readonly<Record<CappedInput, keyof JobInputOptions>> = Object.freeze({
  tenant_id: 'tenantId',
  product_name: 'productName',
  tagline_kor: 'tagline',
  ad_copy_eng: 'adCopy',
  desc_kor: 'descKor',
});

/** A job input longer than its cap (INPUT_CAPS); nothing was created. */
export class InputTooLongError extends Error {
  override name = 'InputTooLongError';
  constructor(
    /** The seeder option (`descKor`), */
    readonly option: keyof JobInputOptions,
    /** its column (`desc_kor`), */
    readonly input: CappedInput,
    readonly cap: number,
    /** and its length in characters. */
    readonly length: number,
  ) {
    super(`${option} (${input}) must be at most ${cap} characters, got ${length}`);
  }
}

/** The options longer than their cap, in INPUT_CAPS order (empty when all fit). */
export function jobInputProblems(o: JobInputOptions): InputTooLongError[] {
  const values: Partial<Record<CappedInput, string | undefined>> = {};
  for (const input of Object.keys(INPUT_CAPS) as CappedInput[]) {
    const value = o[JOB_INPUT_OPTION[input]];
    if (value !== undefined && typeof value !== 'string') {
      throw new TypeError(`${JOB_INPUT_OPTION[input]} must be a string`);
    }
    values[input] = value;
  }
  return inputCapViolations(values).map(
    (v) => new InputTooLongError(JOB_INPUT_OPTION[v.input], v.input, v.cap, v.length),
  );
}

/** Throws the first InputTooLongError of `o`, before anything is stored or inserted. */
export function checkJobInputs(o: JobInputOptions): void {
  const [first] = jobInputProblems(o);
  if (first) throw first;
}

export interface CreatePipelineJobOptions extends JobInputOptions {
  variantsCount?: number;
  /** Mark each variant (img_gen, done) the way the YE part would (default true). */
  imgGen?: boolean;
}

export interface CreatedJob {
  jobId: string;
  tenantId: string;
  imageAssetId: string;
  imageKey: string;
  variantIds: string[];
}

const MIME: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg', webp: 'image/webp' };

/** The image's format from its magic bytes; throws for anything else. */
export function sniffImageType(bytes: Uint8Array, label: string): 'png' | 'jpg' | 'webp' {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpg';
  if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  throw new Error(`${label} is not a PNG, JPEG or WebP image`);
}

async function readImage(path: string): Promise<{ bytes: Buffer; ext: 'png' | 'jpg' | 'webp' }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`cannot read image ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (bytes.length === 0) throw new Error(`image ${path} is empty`);
  return { bytes, ext: sniffImageType(bytes, `image ${path}`) };
}

/** Known tone style codes (seeded by migration 0001). */
export async function toneCodes(db: Pick<pg.Pool, 'query'>): Promise<string[]> {
  const r = await db.query<{ code: string }>('SELECT code FROM tone_styles WHERE code IS NOT NULL ORDER BY code');
  return r.rows.map((x) => x.code);
}

async function checkTone(db: Pick<pg.Pool, 'query'>, tone: string): Promise<void> {
  const codes = await toneCodes(db);
  if (!codes.includes(tone)) {
    throw new Error(`unknown tone style '${tone}' (known: ${codes.join(', ') || 'none: run feedly-pipeline migrate'})`);
  }
}

/** Validates the image and stores it; returns its storage key (relative to STORAGE_DIR). */
async function storeImage(
  storage: StorageLike,
  imagePath: string,
): Promise<{ imageKey: string; bytes: Buffer; ext: string }> {
  const { bytes, ext } = await readImage(imagePath);
  const imageKey = await storage.put(bytes, { prefix: 'uploads', ext });
  return { imageKey, bytes, ext };
}

async function describeAsset(client: pg.PoolClient, assetId: string, bytes: Buffer, ext: string): Promise<void> {
  await client.query('UPDATE image_assets SET mime_type = $2, byte_size = $3, sha256 = $4 WHERE image_asset_id = $1', [
    assetId,
    MIME[ext] ?? null,
    bytes.length,
    createHash('sha256').update(bytes).digest('hex'),
  ]);
}

/**
 * The background job creator's unit of work: stores the image, creates the
 * job (img_gen, queued), its job_inputs, the image_assets row and N variants
 * (creation_order 1..N, img_gen, queued) in one transaction; then, unless
 * `imgGen` is false, marks each variant (img_gen, done) with one UPDATE each,
 * as the YE part does (each UPDATE is one notification).
 */
export async function createPipelineJob(
  pool: pg.Pool,
  storage: StorageLike,
  o: CreatePipelineJobOptions = {},
): Promise<CreatedJob> {
  checkJobInputs(o);
  const tenantId = o.tenantId ?? DEFAULT_TENANT;
  const variants = o.variantsCount ?? 3;
  if (!Number.isInteger(variants) || variants < 1 || variants > 100) {
    throw new Error(`variants count must be an integer from 1 to 100, got ${variants}`);
  }
  const tone = o.tone ?? DEFAULT_TONE;
  await checkTone(pool, tone);
  const created = await withTransaction(pool, async (client) => {
    const img = await storeImage(storage, o.imagePath ?? samplePhotoPath());
    const seeded = await seedJob(client, {
      tenantId,
      variants,
      imageUrl: img.imageKey,
      imageType: 'product',
      descKor: o.descKor ?? DEFAULT_DESC_KOR,
      toneCode: tone,
      adCopyEng: o.adCopy ?? DEFAULT_AD_COPY,
      taglineKor: o.tagline ?? DEFAULT_TAGLINE,
      productName: o.productName ?? DEFAULT_PRODUCT_NAME,
    });
    const imageAssetId = seeded.imageAssetId as string;
    await describeAsset(client, imageAssetId, img.bytes, img.ext);
    return { jobId: seeded.jobId, tenantId, imageAssetId, imageKey: img.imageKey, variantIds: seeded.variantIds };
  });
  if (o.imgGen !== false) await markImgGenDone(pool, created.variantIds);
  return created;
}

export interface CreateYeJobOptions extends JobInputOptions {
  variantsCount?: number;
}

/**
 * The YE-part job creator: a job and its variants at (user_img_input, done),
 * every variant sharing one image asset. Only INSERTs: the state triggers are
 * AFTER UPDATE, so nothing is notified and nothing downstream starts; the
 * variants wait for the real img_gen.
 */
export async function createYeJob(
  pool: pg.Pool,
  storage: StorageLike,
  o: CreateYeJobOptions = {},
): Promise<CreatedJob> {
  checkJobInputs(o);
  const tenantId = o.tenantId ?? DEFAULT_TENANT;
  const variants = o.variantsCount ?? 3;
  if (!Number.isInteger(variants) || variants < 1 || variants > 100) {
    throw new Error(`variants count must be an integer from 1 to 100, got ${variants}`);
  }
  const tone = o.tone ?? DEFAULT_TONE;
  await checkTone(pool, tone);
  return await withTransaction(pool, async (client) => {
    const img = await storeImage(storage, o.imagePath ?? samplePhotoPath());
    const seeded = await seedJob(client, {
      tenantId,
      variants,
      imageUrl: img.imageKey,
      imageType: 'upload',
      jobStep: 'user_img_input',
      jobStatus: 'done',
      variantStep: 'user_img_input',
      variantStatus: 'done',
      descKor: o.descKor ?? DEFAULT_DESC_KOR,
      toneCode: tone,
      adCopyEng: o.adCopy ?? DEFAULT_AD_COPY,
      taglineKor: o.tagline ?? DEFAULT_TAGLINE,
      productName: o.productName ?? DEFAULT_PRODUCT_NAME,
    });
    const imageAssetId = seeded.imageAssetId as string;
    await describeAsset(client, imageAssetId, img.bytes, img.ext);
    return { jobId: seeded.jobId, tenantId, imageAssetId, imageKey: img.imageKey, variantIds: seeded.variantIds };
  });
}

export type JobOutcome = 'done' | 'failed' | 'timeout' | 'aborted';

export interface JobProgress {
  jobId: string;
  step: string;
  status: string;
  failureReason: string | null;
  lastError: string | null;
  /** Variant states, e.g. { 'planner/done': 2, 'overlay/running': 1 }. */
  variants: Record<string, number>;
}

export async function jobProgress(db: Pick<pg.Pool, 'query'>, jobId: string): Promise<JobProgress | null> {
  const j = await db.query<{
    current_step: string;
    status: string;
    failure_reason: string | null;
    last_error: string | null;
  }>('SELECT current_step, status, failure_reason, last_error FROM jobs WHERE job_id = $1', [jobId]);
  const row = j.rows[0];
  if (!row) return null;
  const v = await db.query<{ s: string; n: number }>(
    `SELECT current_step || '/' || status AS s, count(*)::int AS n
       FROM jobs_variants WHERE job_id = $1 GROUP BY 1 ORDER BY 1`,
    [jobId],
  );
  return {
    jobId,
    step: row.current_step,
    status: row.status,
    failureReason: row.failure_reason,
    lastError: row.last_error,
    variants: Object.fromEntries(v.rows.map((r) => [r.s, r.n])),
  };
}

export function progressLine(p: JobProgress): string {
  const vs = Object.entries(p.variants)
    .map(([s, n]) => `${s} x${n}`)
    .join(', ');
  const reason = p.failureReason ? ` (${p.failureReason})` : '';
  return `job ${p.jobId}: ${p.step}/${p.status}${reason}; variants: ${vs || 'none'}`;
}

/** Terminal outcome of a job, or null while it is still going. */
export function outcomeOf(p: Pick<JobProgress, 'step' | 'status' | 'failureReason'>): 'done' | 'failed' | null {
  if (p.step === FINAL_STEP && p.status === 'done') return 'done';
  if (p.failureReason) return 'failed';
  return null;
}

/**
 * Polls until the job reaches (instagram_feed_gen, done) or failed for good
 * (failure_reason set: given up or cancelled), the timeout passes, or the
 * signal aborts. `onProgress` is called with each changed progress line.
 */
export async function waitForJob(
  db: Pick<pg.Pool, 'query'>,
  jobId: string,
  o: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal; onProgress?: (line: string) => void } = {},
): Promise<{ outcome: JobOutcome; progress: JobProgress | null }> {
  const deadline = Date.now() + (o.timeoutMs ?? 15 * 60_000);
  let last = '';
  let p: JobProgress | null = null;
  for (;;) {
    p = await jobProgress(db, jobId);
    if (!p) throw new Error(`job ${jobId} not found`);
    const line = progressLine(p);
    if (line !== last) {
      last = line;
      o.onProgress?.(line);
    }
    const out = outcomeOf(p);
    if (out) return { outcome: out, progress: p };
    if (o.signal?.aborted) return { outcome: 'aborted', progress: p };
    if (Date.now() >= deadline) return { outcome: 'timeout', progress: p };
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, o.intervalMs ?? 500);
      function done() {
        clearTimeout(t);
        o.signal?.removeEventListener('abort', done);
        resolve();
      }
      o.signal?.addEventListener('abort', done, { once: true });
    });
  }
}

export interface SeederOptions extends CreatePipelineJobOptions {
  once?: boolean;
  waitForCompletion?: boolean;
  /** Seconds between job creations (default 60). */
  createIntervalS?: number;
  /** Stop after this many jobs (default: unbounded unless `once`). */
  maxJobs?: number;
  /** How long to wait for one job to complete with waitForCompletion (default 15 min). */
  completionTimeoutS?: number;
  /** Poll interval while waiting (default 500 ms). */
  pollIntervalMs?: number;
}

export interface SeederSummary {
  created: CreatedJob[];
  completed: number;
  failed: number;
  timedOut: number;
  interrupted: boolean;
}

/**
 * The background job creator loop. Stops after one job with `once`, after
 * `maxJobs`, or when `signal` aborts (Ctrl-C): an insert in progress always
 * finishes, the loop stops before the next one.
 */
export async function runSeeder(
  pool: pg.Pool,
  storage: StorageLike,
  o: SeederOptions,
  hooks: { signal?: AbortSignal; log?: (line: string) => void } = {},
): Promise<SeederSummary> {
  checkJobInputs(o); // before the first job, not after some were created
  const log = hooks.log ?? (() => {});
  const max = o.once ? 1 : (o.maxJobs ?? Number.POSITIVE_INFINITY);
  const intervalMs = (o.createIntervalS ?? 60) * 1000;
  const summary: SeederSummary = { created: [], completed: 0, failed: 0, timedOut: 0, interrupted: false };
  while (summary.created.length < max) {
    if (hooks.signal?.aborted) break;
    const startedAt = Date.now();
    const job = await createPipelineJob(pool, storage, o);
    summary.created.push(job);
    log(
      `created job ${job.jobId} (tenant ${job.tenantId}, ${job.variantIds.length} variants, image ${job.imageKey}` +
        `${o.imgGen === false ? ', variants left at img_gen/queued' : ', variants marked img_gen/done'})`,
    );
    if (o.waitForCompletion) {
      const r = await waitForJob(pool, job.jobId, {
        timeoutMs: (o.completionTimeoutS ?? 900) * 1000,
        intervalMs: o.pollIntervalMs ?? 500,
        ...(hooks.signal ? { signal: hooks.signal } : {}),
        onProgress: (line) => log(`  ${line}`),
      });
      if (r.outcome === 'done') {
        summary.completed++;
        log(`job ${job.jobId} completed in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
      } else if (r.outcome === 'failed') {
        summary.failed++;
        log(`job ${job.jobId} failed: ${r.progress?.failureReason ?? 'unknown reason'}`);
      } else if (r.outcome === 'timeout') {
        summary.timedOut++;
        log(`job ${job.jobId} did not complete within ${o.completionTimeoutS ?? 900} s`);
      }
    }
    if (summary.created.length >= max || hooks.signal?.aborted) break;
    const wait = startedAt + intervalMs - Date.now();
    if (wait > 0) {
      log(`next job in ${(wait / 1000).toFixed(0)} s (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, wait);
        function done() {
          clearTimeout(t);
          hooks.signal?.removeEventListener('abort', done);
          resolve();
        }
        hooks.signal?.addEventListener('abort', done, { once: true });
      });
    }
  }
  summary.interrupted = Boolean(hooks.signal?.aborted);
  return summary;
}

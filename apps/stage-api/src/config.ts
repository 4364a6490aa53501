/**
 * Configuration of the stage server: environment variables (the shared ones
 * of docs/configuration.md, and the model and limit variables of this app:
 * apps/stage-api/README.md), overridden by buildApp options, validated once
 * with clear errors.
 */
import { databaseUrlFromEnv } from '@feedlyai/pipeline-core';
import { allowedHostsFromEnv } from '@feedlyai/storage';
import { z } from 'zod';

/** The bounded resources: one semaphore each. */
export const RESOURCES = ['vlm', 'llm', 'yolo', 'ocr', 'render'] as const;
export type Resource = (typeof RESOURCES)[number];

export interface ModelEndpointConfig {
  /** OpenAI-compatible base URL (…/v1); null: the CPU fallback. */
  baseUrl: string | null;
  model: string;
  apiKey: string | null;
  timeoutMs: number;
  maxRetries: number;
}

export interface StageConfig {
  databaseUrl: string;
  storageDir: string;
  /** Bearer token; null: no auth. */
  token: string | null;
  host: string;
  port: number;
  bodyLimit: number;
  vlm: ModelEndpointConfig;
  llm: ModelEndpointConfig;
  yoloModelPath: string | null;
  concurrency: Record<Resource, number>;
  /**
   * Admission (docs/stage-api.md, "Admission"): requests that may wait in
   * each resource's FIFO once its concurrency is in use; 0: none wait.
   */
  queue: Record<Resource, number>;
  /** Longest admission wait in ms, every resource; null: half the request's deadline. */
  queueMaxWaitMs: number | null;
  /** Longest admission wait in ms of one resource; null: queueMaxWaitMs. */
  queueMaxWaitMsOf: Record<Resource, number | null>;
  /** The most seconds a 429's Retry-After announces (it is derived from the measured drain rate). */
  retryAfterSeconds: number;
  /** Worker threads for the CPU-heavy image work; 0 runs it inline (tests, tiny machines). */
  cpuWorkers: number;
  ocrWorkers: number;
  imageFetch: { allowedHosts: string[]; maxBytes: number; timeoutMs: number };
  /** Upper bound of any stored or fetched input image. */
  maxImageBytes: number;
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? Partial<T[K]> : T[K] };
export type ConfigOverrides = DeepPartial<StageConfig>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** One message per setting, whatever zod found wrong (type, not an integer, out of range). */
const intFrom = (min: number, max: number) => {
  const error = `must be an integer from ${min} to ${max}`;
  return z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};
const text = (error = 'must not be empty') => z.string({ error }).min(1, { error });
const urlOrNull = z
  .string({ error: 'must be an http(s) URL' })
  .trim()
  .transform((s) => (s === '' ? null : s))
  .nullable()
  .refine((s) => s === null || /^https?:\/\/[^\s]+$/i.test(s), { message: 'must be an http(s) URL' });

const endpointSchema = z.object({
  baseUrl: urlOrNull,
  model: z.string({ error: 'must not be empty' }).trim().min(1, { error: 'must not be empty' }),
  apiKey: z.string({ error: 'must be a string' }).nullable(),
  timeoutMs: intFrom(100, 3_600_000),
  maxRetries: intFrom(0, 10),
});

const NO_DATABASE = 'no database configured: set DATABASE_URL (or DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD)';

const schema = z.object({
  databaseUrl: z.string({ error: NO_DATABASE }).min(1, { error: NO_DATABASE }),
  storageDir: text(),
  token: z.string({ error: 'must be a string' }).nullable(),
  host: text(),
  port: intFrom(0, 65535),
  bodyLimit: intFrom(256, 100 * 1024 * 1024),
  vlm: endpointSchema,
  llm: endpointSchema,
  yoloModelPath: z.string({ error: 'must be a path' }).nullable(),
  concurrency: z.object(
    Object.fromEntries(RESOURCES.map((r) => [r, intFrom(1, 256)])) as unknown as Record<Resource, z.ZodType<number>>,
  ),
  queue: z.object(
    Object.fromEntries(RESOURCES.map((r) => [r, intFrom(0, 100_000)])) as unknown as Record<
      Resource,
      z.ZodType<number>
    >,
  ),
  queueMaxWaitMs: intFrom(0, 3_600_000).nullable(),
  queueMaxWaitMsOf: z.object(
    Object.fromEntries(RESOURCES.map((r) => [r, intFrom(0, 3_600_000).nullable()])) as unknown as Record<
      Resource,
      z.ZodType<number | null>
    >,
  ),
  retryAfterSeconds: intFrom(1, 3600),
  cpuWorkers: intFrom(0, 64),
  ocrWorkers: intFrom(1, 16),
  imageFetch: z.object({
    allowedHosts: z.array(z.string({ error: 'must be a list of host names' }), {
      error: 'must be a list of host names',
    }),
    maxBytes: intFrom(1, 1024 * 1024 * 1024),
    timeoutMs: intFrom(1, 600_000),
  }),
  maxImageBytes: intFrom(1, 1024 * 1024 * 1024),
});

/**
 * The environment variable behind each setting (apps/stage-api/README.md):
 * an invalid value is reported under the name the operator set.
 */
const ENV_OF: Readonly<Record<string, string>> = {
  databaseUrl: 'DATABASE_URL',
  storageDir: 'STORAGE_DIR',
  token: 'STAGE_API_TOKEN',
  host: 'HOST',
  port: 'PORT',
  bodyLimit: 'STAGE_BODY_LIMIT',
  ...Object.fromEntries(
    (['vlm', 'llm'] as const).flatMap((k) => {
      const prefix = k.toUpperCase();
      return [
        [`${k}.baseUrl`, `${prefix}_BASE_URL`],
        [`${k}.model`, `${prefix}_MODEL`],
        [`${k}.apiKey`, `${prefix}_API_KEY`],
        [`${k}.timeoutMs`, `${prefix}_TIMEOUT_MS`],
        [`${k}.maxRetries`, `${prefix}_MAX_RETRIES`],
      ];
    }),
  ),
  yoloModelPath: 'YOLO_MODEL_PATH',
  ...Object.fromEntries(RESOURCES.map((r) => [`concurrency.${r}`, `STAGE_CONCURRENCY_${r.toUpperCase()}`])),
  ...Object.fromEntries(RESOURCES.map((r) => [`queue.${r}`, `STAGE_QUEUE_${r.toUpperCase()}`])),
  queueMaxWaitMs: 'STAGE_QUEUE_MAX_WAIT_MS',
  ...Object.fromEntries(RESOURCES.map((r) => [`queueMaxWaitMsOf.${r}`, `STAGE_QUEUE_MAX_WAIT_MS_${r.toUpperCase()}`])),
  retryAfterSeconds: 'STAGE_RETRY_AFTER_SECONDS',
  cpuWorkers: 'STAGE_CPU_WORKERS',
  ocrWorkers: 'STAGE_OCR_WORKERS',
  'imageFetch.allowedHosts': 'IMAGE_FETCH_ALLOWED_HOSTS',
  'imageFetch.maxBytes': 'IMAGE_FETCH_MAX_BYTES',
  'imageFetch.timeoutMs': 'IMAGE_FETCH_TIMEOUT_MS',
  maxImageBytes: 'STAGE_MAX_IMAGE_BYTES',
};

/** The environment variables of the stage server's own settings (the listener's are the plugin's). */
export const STAGE_ENV_VARS: readonly string[] = Object.freeze([...new Set(Object.values(ENV_OF))]);

function envOr(env: NodeJS.ProcessEnv, key: string): string | undefined {
  const v = env[key];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function endpointFromEnv(env: NodeJS.ProcessEnv, prefix: 'VLM' | 'LLM', defaultModel: string) {
  return {
    baseUrl: envOr(env, `${prefix}_BASE_URL`) ?? null,
    model: envOr(env, `${prefix}_MODEL`) ?? defaultModel,
    apiKey: envOr(env, `${prefix}_API_KEY`) ?? null,
    timeoutMs: envOr(env, `${prefix}_TIMEOUT_MS`) ?? 60_000,
    maxRetries: envOr(env, `${prefix}_MAX_RETRIES`) ?? 3,
  };
}

/** A value for an error message: strings quoted, at most 80 characters, secrets never shown. */
function shown(path: string, value: unknown): string {
  if (/token|apiKey|databaseUrl/i.test(path)) return '';
  if (value === undefined) return '';
  const s = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  return `, got ${s.length > 80 ? `${s.slice(0, 77)}...` : s}`;
}

function valueAt(obj: unknown, path: readonly PropertyKey[]): unknown {
  let v = obj;
  for (const k of path) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/**
 * One line per invalid setting, named the way it was set: the environment
 * variable (`VLM_TIMEOUT_MS must be an integer from 100 to 3600000, got
 * "abc"`), or `option vlm.timeoutMs` when buildApp's options gave it.
 */
function describeIssue(issue: z.core.$ZodIssue, merged: unknown, fromOptions: ReadonlySet<string>): string {
  const path = issue.path.map(String);
  const full = path.join('.');
  if (issue.message === NO_DATABASE)
    return fromOptions.has(full) ? 'option databaseUrl must not be empty' : NO_DATABASE;
  const value = shown(full, valueAt(merged, issue.path));
  // The longest prefix an option gave, or else one a variable gave (`imageFetch.allowedHosts.0`: the list).
  for (let n = path.length; n > 0; n--) {
    const prefix = path.slice(0, n).join('.');
    if (fromOptions.has(prefix)) return `option ${full} ${issue.message}${value}`;
  }
  for (let n = path.length; n > 0; n--) {
    const variable = ENV_OF[path.slice(0, n).join('.')];
    if (variable) return `${variable} ${issue.message}${n === path.length ? value : ''}`;
  }
  return `${full || '(root)'}: ${issue.message}${value}`;
}

/**
 * The effective configuration: environment, then `overrides` (buildApp
 * options) on top. Throws ConfigError naming every invalid setting by its
 * environment variable, or by its option when an option gave it.
 */
export function loadConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): StageConfig {
  const fromEnv = {
    databaseUrl: databaseUrlFromEnv(env) ?? '',
    storageDir: envOr(env, 'STORAGE_DIR') ?? '.data/storage',
    token: envOr(env, 'STAGE_API_TOKEN') ?? null,
    host: envOr(env, 'HOST') ?? '127.0.0.1',
    port: envOr(env, 'PORT') ?? 8011,
    bodyLimit: envOr(env, 'STAGE_BODY_LIMIT') ?? 64 * 1024,
    vlm: endpointFromEnv(env, 'VLM', 'llava'),
    llm: endpointFromEnv(env, 'LLM', 'gpt-4o-mini'),
    yoloModelPath: envOr(env, 'YOLO_MODEL_PATH') ?? null,
    concurrency: {
      vlm: envOr(env, 'STAGE_CONCURRENCY_VLM') ?? 2,
      llm: envOr(env, 'STAGE_CONCURRENCY_LLM') ?? 2,
      yolo: envOr(env, 'STAGE_CONCURRENCY_YOLO') ?? 1,
      ocr: envOr(env, 'STAGE_CONCURRENCY_OCR') ?? 1,
      render: envOr(env, 'STAGE_CONCURRENCY_RENDER') ?? 2,
    },
    queue: {
      vlm: envOr(env, 'STAGE_QUEUE_VLM') ?? 64,
      llm: envOr(env, 'STAGE_QUEUE_LLM') ?? 64,
      yolo: envOr(env, 'STAGE_QUEUE_YOLO') ?? 64,
      ocr: envOr(env, 'STAGE_QUEUE_OCR') ?? 64,
      render: envOr(env, 'STAGE_QUEUE_RENDER') ?? 64,
    },
    queueMaxWaitMs: envOr(env, 'STAGE_QUEUE_MAX_WAIT_MS') ?? null,
    queueMaxWaitMsOf: {
      vlm: envOr(env, 'STAGE_QUEUE_MAX_WAIT_MS_VLM') ?? null,
      llm: envOr(env, 'STAGE_QUEUE_MAX_WAIT_MS_LLM') ?? null,
      yolo: envOr(env, 'STAGE_QUEUE_MAX_WAIT_MS_YOLO') ?? null,
      ocr: envOr(env, 'STAGE_QUEUE_MAX_WAIT_MS_OCR') ?? null,
      render: envOr(env, 'STAGE_QUEUE_MAX_WAIT_MS_RENDER') ?? null,
    },
    retryAfterSeconds: envOr(env, 'STAGE_RETRY_AFTER_SECONDS') ?? 30,
    cpuWorkers: envOr(env, 'STAGE_CPU_WORKERS') ?? 1,
    ocrWorkers: envOr(env, 'STAGE_OCR_WORKERS') ?? 1,
    imageFetch: {
      allowedHosts: allowedHostsFromEnv(env),
      maxBytes: envOr(env, 'IMAGE_FETCH_MAX_BYTES') ?? 25 * 1024 * 1024,
      timeoutMs: envOr(env, 'IMAGE_FETCH_TIMEOUT_MS') ?? 15_000,
    },
    maxImageBytes: envOr(env, 'STAGE_MAX_IMAGE_BYTES') ?? 25 * 1024 * 1024,
  };
  const merged: Record<string, unknown> = { ...fromEnv };
  /** Paths (`port`, `vlm.timeoutMs`, or a whole object when it is not one) the options gave. */
  const fromOptions = new Set<string>();
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    const base = (fromEnv as Record<string, unknown>)[k];
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && base && typeof base === 'object') {
      const given = Object.entries(v).filter(([, x]) => x !== undefined);
      for (const [nk] of given) fromOptions.add(`${k}.${nk}`);
      merged[k] = { ...(base as object), ...Object.fromEntries(given) };
    } else {
      fromOptions.add(k);
      merged[k] = v;
    }
  }
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const lines = [...new Set(parsed.error.issues.map((i) => describeIssue(i, merged, fromOptions)))];
    throw new ConfigError(`invalid stage-api configuration: ${lines.join('; ')}`);
  }
  return parsed.data as StageConfig;
}

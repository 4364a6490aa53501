/**
 * Configuration of the stage server: environment variables (the shared ones
 * of docs/configuration.md, and the model and limit variables of this app:
 * apps/stage-api/README.md), overridden by buildApp options, validated once
 * with clear errors.
 */
import { allowedHostsFromEnv, databaseUrlFromEnv } from '@feedlyai/pipeline-core';
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
  /** Seconds announced in Retry-After when a resource is saturated. */
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

const intFrom = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const urlOrNull = z
  .string()
  .trim()
  .transform((s) => (s === '' ? null : s))
  .nullable()
  .refine((s) => s === null || /^https?:\/\/[^\s]+$/i.test(s), { message: 'must be an http(s) URL' });

const endpointSchema = z.object({
  baseUrl: urlOrNull,
  model: z.string().trim().min(1),
  apiKey: z.string().nullable(),
  timeoutMs: intFrom(100, 3_600_000),
  maxRetries: intFrom(0, 10),
});

const schema = z.object({
  databaseUrl: z
    .string()
    .min(1, 'no database configured: set DATABASE_URL (or DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD)'),
  storageDir: z.string().min(1),
  token: z.string().nullable(),
  host: z.string().min(1),
  port: intFrom(0, 65535),
  bodyLimit: intFrom(256, 100 * 1024 * 1024),
  vlm: endpointSchema,
  llm: endpointSchema,
  yoloModelPath: z.string().nullable(),
  concurrency: z.object(
    Object.fromEntries(RESOURCES.map((r) => [r, intFrom(1, 256)])) as unknown as Record<Resource, z.ZodType<number>>,
  ),
  retryAfterSeconds: intFrom(1, 3600),
  cpuWorkers: intFrom(0, 64),
  ocrWorkers: intFrom(1, 16),
  imageFetch: z.object({
    allowedHosts: z.array(z.string()),
    maxBytes: intFrom(1, 1024 * 1024 * 1024),
    timeoutMs: intFrom(1, 600_000),
  }),
  maxImageBytes: intFrom(1, 1024 * 1024 * 1024),
});

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

/**
 * The effective configuration: environment, then `overrides` (buildApp
 * options) on top. Throws ConfigError naming every invalid setting.
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
    retryAfterSeconds: envOr(env, 'STAGE_RETRY_AFTER_SECONDS') ?? 5,
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
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    const base = (fromEnv as Record<string, unknown>)[k];
    merged[k] =
      v !== null && typeof v === 'object' && !Array.isArray(v) && base && typeof base === 'object'
        ? { ...(base as object), ...Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) }
        : v;
  }
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid stage-api configuration: ${lines.join('; ')}`);
  }
  return parsed.data as StageConfig;
}

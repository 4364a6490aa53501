/**
 * The dashboard's options (docs/dashboard.md, "Options"), validated at
 * registration: a bad option fails `app.register` with a message naming it.
 */
import { databaseUrlFromEnv } from '@feedlyai/pipeline-core';
import { allowedHostsFromEnv } from '@feedlyai/storage';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';

/** What the dashboard needs of a pg.Pool (the host's, from any copy of pg). */
export interface PoolLike {
  query: (...args: never[]) => Promise<unknown>;
  connect: () => Promise<unknown>;
}

/** The host's auth hook, run first on every dashboard request (pages, events, images, static files). */
export type DashboardHook = (request: FastifyRequest, reply: FastifyReply) => unknown;

export interface DashboardOptions {
  /** The host's auth hook (an onRequest hook: reply with 401/403 to reject). */
  onRequest?: DashboardHook;
  /** Serve without an auth hook. Must be said explicitly; for a server bound to 127.0.0.1. */
  allowAnonymous?: boolean;
  /** A pg.Pool of the host's (not closed by the dashboard). */
  pool?: PoolLike;
  /** The name of a named @fastify/postgres registration to use. */
  pgName?: string;
  /** A database of its own: the dashboard opens (and closes) a small pool. */
  connectionString?: string;
  /** Read images through the storage package from this folder (else from the stage server). */
  storageDir?: string;
  /** Hosts an `http(s)` image_url may be fetched from (storageDir mode; default IMAGE_FETCH_ALLOWED_HOSTS). */
  imageFetchAllowedHosts?: string[];
  /** The stage server images are proxied from (default STAGE_API_URL, else http://localhost:8011). */
  stageApiUrl?: string;
  /** Its bearer token (default STAGE_API_TOKEN). */
  stageApiToken?: string;
  /** Largest image read, bytes (default 32 MiB). */
  imageMaxBytes?: number;
  /** Time limit of an image read, ms (default 15,000). */
  imageTimeoutMs?: number;
  /** Bound of the thumbnail cache, bytes (default 32 MiB). */
  thumbnailCacheBytes?: number;
  /** Live events kept for browsers that reconnect (default 10,000). */
  ringSize?: number;
  /** Interval of the keep-alive comment on event streams, ms (default 15,000). */
  heartbeatMs?: number;
  /** Open event streams at most (default 1,000); more are answered 503. */
  maxStreams?: number;
  /** The `Secure` attribute of the CSRF cookie (default 'auto': when the request came over HTTPS). */
  cookieSecure?: boolean | 'auto';
  /** Environment read for the defaults (default process.env). */
  env?: NodeJS.ProcessEnv;
}

const schema = z
  .object({
    onRequest: z.custom<DashboardHook>((v) => typeof v === 'function', 'must be a function').optional(),
    allowAnonymous: z.boolean().optional(),
    pool: z
      .custom<PoolLike>(
        (v) =>
          typeof v === 'object' &&
          v !== null &&
          typeof (v as PoolLike).query === 'function' &&
          typeof (v as PoolLike).connect === 'function',
        'must be a pg.Pool',
      )
      .optional(),
    pgName: z.string().min(1).optional(),
    connectionString: z.string().min(1).optional(),
    storageDir: z.string().min(1).optional(),
    imageFetchAllowedHosts: z.array(z.string().min(1)).optional(),
    stageApiUrl: z.url({ protocol: /^https?$/ }).optional(),
    stageApiToken: z.string().min(1).optional(),
    imageMaxBytes: z.number().int().min(1024).optional(),
    imageTimeoutMs: z.number().int().min(1).optional(),
    thumbnailCacheBytes: z.number().int().min(0).optional(),
    ringSize: z.number().int().min(1).max(1_000_000).optional(),
    heartbeatMs: z.number().int().min(10).optional(),
    maxStreams: z.number().int().min(1).optional(),
    cookieSecure: z.union([z.boolean(), z.literal('auto')]).optional(),
    env: z.record(z.string(), z.string().optional()).optional(),
  })
  .passthrough();

export interface ResolvedOptions {
  onRequest: DashboardHook | null;
  pool: PoolLike | null;
  pgName: string | null;
  /** From the option (wins over the host's @fastify/postgres) or from the environment (loses to it). */
  connectionString: string | null;
  connectionStringFromOption: boolean;
  storageDir: string | null;
  imageFetchAllowedHosts: string[];
  stageApiUrl: string;
  stageApiToken: string | null;
  imageMaxBytes: number;
  imageTimeoutMs: number;
  thumbnailCacheBytes: number;
  ringSize: number;
  heartbeatMs: number;
  maxStreams: number;
  cookieSecure: boolean | 'auto';
}

export class DashboardOptionsError extends Error {
  constructor(message: string) {
    super(`@feedlyai/dashboard: ${message}`);
    this.name = 'DashboardOptionsError';
  }
}

/** Validates the options; throws DashboardOptionsError naming what is wrong. */
export function resolveOptions(input: DashboardOptions | undefined): ResolvedOptions {
  const parsed = schema.safeParse(input ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `option ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new DashboardOptionsError(`invalid options: ${issues.join('; ')}`);
  }
  const o = parsed.data as DashboardOptions;
  if (!o.onRequest && o.allowAnonymous !== true) {
    throw new DashboardOptionsError(
      'pass your auth hook as the onRequest option, or allowAnonymous: true to serve the dashboard without one (only on a server bound to 127.0.0.1)',
    );
  }
  if (o.onRequest && o.allowAnonymous === true) {
    throw new DashboardOptionsError('onRequest and allowAnonymous: true contradict each other; pass one of them');
  }
  const env = o.env ?? process.env;
  const fromEnv = databaseUrlFromEnv(env) ?? null;
  return {
    onRequest: o.onRequest ?? null,
    pool: o.pool ?? null,
    pgName: o.pgName ?? null,
    connectionString: o.connectionString ?? fromEnv,
    connectionStringFromOption: o.connectionString !== undefined,
    storageDir: o.storageDir ?? null,
    imageFetchAllowedHosts: o.imageFetchAllowedHosts ?? allowedHostsFromEnv(env),
    stageApiUrl: o.stageApiUrl ?? (env.STAGE_API_URL?.trim() || 'http://localhost:8011'),
    stageApiToken: o.stageApiToken ?? (env.STAGE_API_TOKEN?.trim() || null),
    imageMaxBytes: o.imageMaxBytes ?? 32 * 1024 * 1024,
    imageTimeoutMs: o.imageTimeoutMs ?? 15_000,
    thumbnailCacheBytes: o.thumbnailCacheBytes ?? 32 * 1024 * 1024,
    ringSize: o.ringSize ?? 10_000,
    heartbeatMs: o.heartbeatMs ?? 15_000,
    maxStreams: o.maxStreams ?? 1_000,
    cookieSecure: o.cookieSecure ?? 'auto',
  };
}

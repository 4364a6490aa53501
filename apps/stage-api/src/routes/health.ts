/**
 * Health (no token; docs/stage-api.md, "Health"):
 *
 * - GET /healthz: the database and each model backend, configured or on its
 *   CPU fallback, reachable or not. No secrets: URLs are reduced to
 *   scheme://host, keys and tokens never appear.
 * - GET /livez: the process serves requests. Nothing else is checked.
 * - GET /readyz: ready to take stage calls: migrated, warmed up, the database
 *   reachable, and every configured model server reachable (a configured one
 *   that cannot be reached is not ready). 503 otherwise. From the start of a
 *   shutdown Fastify answers 503 to every new request (return503OnClosing).
 *
 * The model servers are asked at most once per 5 s, whatever the number of
 * probes: readiness and the model pings of /healthz are cached for
 * HEALTH_CACHE_MS, and probes that arrive while a check runs share it.
 */
import { access, constants } from 'node:fs/promises';
import { LATEST_MIGRATION } from '@feedlyai/pipeline-core';
import { STAGE_MIGRATION_SET } from '../migrations/index.js';
import type { FastifyPluginAsync } from 'fastify';
import type { ChatClient } from '../clients/chat.js';
import type { StageContext } from '../stages/runner.js';

const STAGE_LATEST = Math.max(...STAGE_MIGRATION_SET.migrations.map((m) => m.id));

function origin(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '<invalid url>';
  }
}

/** How long a readiness result and a model server's ping are reused. */
export const HEALTH_CACHE_MS = 5_000;

/** The model servers' timeout for a ping. */
const PING_TIMEOUT_MS = 2_000;

type Ping = { reachable: boolean; detail: string };

/**
 * A value computed at most once per `ttlMs`: callers during a computation
 * share it, callers within `ttlMs` of its end get it again.
 */
export class Cached<T> {
  private value: { at: number; v: T } | null = null;
  private running: Promise<T> | null = null;
  constructor(
    private readonly compute: () => Promise<T>,
    private readonly ttlMs: number,
  ) {}

  /** The value and its age in ms. */
  async get(): Promise<{ value: T; ageMs: number }> {
    const now = performance.now();
    if (this.value && now - this.value.at < this.ttlMs) return { value: this.value.v, ageMs: now - this.value.at };
    this.running ??= this.compute().then(
      (v) => {
        this.value = { at: performance.now(), v };
        this.running = null;
        return v;
      },
      (err: unknown) => {
        this.running = null;
        throw err;
      },
    );
    const v = await this.running;
    return { value: v, ageMs: this.value ? performance.now() - this.value.at : 0 };
  }
}

/** The configured model servers' pings, shared by /healthz and /readyz. */
function modelPings(ctx: StageContext): Cached<{ vlm: Ping | null; llm: Ping | null }> {
  const ping = (c: ChatClient | null) => (c ? c.ping(PING_TIMEOUT_MS) : Promise.resolve(null));
  return new Cached(async () => {
    const [vlm, llm] = await Promise.all([ping(ctx.backends.vlm?.client ?? null), ping(ctx.backends.llm)]);
    return { vlm, llm };
  }, HEALTH_CACHE_MS);
}

function chatBackend(client: ChatClient | null, fallback: string, p: Ping | null) {
  if (!client || !p) return { mode: 'fallback', method: fallback, reachable: null };
  return {
    mode: 'model',
    method: 'vlm',
    model: client.model,
    endpoint: origin(client.baseUrl),
    reachable: p.reachable,
    detail: p.detail,
  };
}

export const healthRoutes: FastifyPluginAsync<{ ctx: StageContext; listenerStatus: () => unknown }> = async (
  app,
  opts,
) => {
  const { ctx } = opts;
  const pings = modelPings(ctx);
  const yoloReadable = async () =>
    ctx.config.yoloModelPath
      ? await access(ctx.config.yoloModelPath, constants.R_OK).then(
          () => true,
          () => false,
        )
      : null;
  const databaseState = async (): Promise<
    | {
        ok: true;
        latency_ms: number;
        migration: number;
        migration_expected: number;
        stage_migration: number;
        stage_migration_expected: number;
      }
    | { ok: false; error: string }
  > => {
    const t0 = performance.now();
    try {
      const r = await ctx.pool.query<{ id: number | null; stage: number | null }>(
        `SELECT (SELECT max(id) FROM feedly_migrations) AS id,
                (SELECT max(id) FROM ${STAGE_MIGRATION_SET.trackingTable}) AS stage`,
      );
      return {
        ok: true,
        latency_ms: Math.round(performance.now() - t0),
        migration: r.rows[0]?.id ?? 0,
        migration_expected: LATEST_MIGRATION,
        stage_migration: r.rows[0]?.stage ?? 0,
        stage_migration_expected: STAGE_LATEST,
      };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  };

  app.get('/livez', { config: { public: true } }, async () => ({ status: 'ok' }));

  const readiness = new Cached(async () => {
    const [database, ping, yolo] = await Promise.all([databaseState(), pings.get(), yoloReadable()]);
    const warmup = ctx.warmup.status();
    const server = (p: Ping | null) =>
      p ? { configured: true, ok: p.reachable, detail: p.detail } : { configured: false, ok: true };
    const checks = {
      database: database.ok ? { ok: true } : { ok: false, detail: database.error },
      migrations: database.ok
        ? migrationCheck(database.migration, database.migration_expected)
        : { ok: false, detail: 'database unreachable' },
      // The stage server's own set (docs/migrations.md), applied at boot after the engine's.
      stage_migrations: database.ok
        ? migrationCheck(database.stage_migration, database.stage_migration_expected)
        : { ok: false, detail: 'database unreachable' },
      // Not enabled: nothing to wait for. Finished with a failed part: that part loads on first use.
      warmup: { ok: !warmup.enabled || warmup.finished, state: warmup.state },
      vlm: server(ping.value.vlm),
      llm: server(ping.value.llm),
      yolo: yolo === null ? { configured: false, ok: true } : { configured: true, ok: yolo, model_file_readable: yolo },
    };
    return { checks, checkedAt: new Date() };
  }, HEALTH_CACHE_MS);

  app.get('/readyz', { config: { public: true } }, async (_req, reply) => {
    const { value, ageMs } = await readiness.get();
    const failing = Object.entries(value.checks)
      .filter(([, c]) => !c.ok)
      .map(([name]) => name);
    return reply.code(failing.length === 0 ? 200 : 503).send({
      status: failing.length === 0 ? 'ready' : 'not_ready',
      failing,
      checks: value.checks,
      checked_at: value.checkedAt.toISOString(),
      age_ms: Math.round(ageMs),
    });
  });

  app.get('/healthz', { config: { public: true } }, async (_req, reply) => {
    const [database, ping, readable] = await Promise.all([databaseState(), pings.get(), yoloReadable()]);
    const vlm = chatBackend(ctx.backends.vlm?.client ?? null, 'heuristic', ping.value.vlm);
    const llm = chatBackend(ctx.backends.llm, 'template', ping.value.llm);
    if (vlm.mode === 'model') vlm.method = 'vlm';
    if (llm.mode === 'model') llm.method = 'llm';
    const yolo: Record<string, unknown> =
      readable === null
        ? { mode: 'fallback', method: 'saliency', reachable: null }
        : { mode: 'model', method: 'yolo', model_file_readable: readable, reachable: readable };
    const storageOk = await access(ctx.storage.root, constants.W_OK).then(
      () => true,
      () => false,
    );
    const body = {
      status: database.ok ? 'ok' : 'degraded',
      database,
      backends: { vlm, llm, yolo, ocr: { mode: 'local', method: 'tesseract', languages: ['eng', 'kor'] } },
      storage: { writable: storageOk },
      cpu: { mode: ctx.cpu.mode, threads: ctx.cpu.threads },
      concurrency: ctx.limiter.snapshot(),
      warmup: ctx.warmup.status(),
      listener: opts.listenerStatus(),
    };
    return reply.code(database.ok ? 200 : 503).send(body);
  });
};

/** A migration set's readiness: applied at least up to the migration this build expects. */
function migrationCheck(current: number, expected: number): { ok: boolean; current: number; expected: number } {
  return { ok: current >= expected, current, expected };
}

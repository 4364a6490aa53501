/**
 * GET /healthz (no token): the database and each model backend, configured
 * or on its CPU fallback, reachable or not. No secrets: URLs are reduced to
 * scheme://host, keys and tokens never appear.
 */
import { access, constants } from 'node:fs/promises';
import { LATEST_MIGRATION } from '@feedlyai/pipeline-core';
import type { FastifyPluginAsync } from 'fastify';
import type { ChatClient } from '../clients/chat.js';
import type { StageContext } from '../stages/runner.js';

function origin(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '<invalid url>';
  }
}

async function chatBackend(client: ChatClient | null, fallback: string) {
  if (!client) return { mode: 'fallback', method: fallback, reachable: null };
  const p = await client.ping(2_000);
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
  app.get('/healthz', { config: { public: true } }, async (_req, reply) => {
    const t0 = performance.now();
    let database: Record<string, unknown>;
    try {
      const r = await ctx.pool.query<{ id: number | null }>('SELECT max(id) AS id FROM feedly_migrations');
      const current = r.rows[0]?.id ?? 0;
      database = {
        ok: true,
        latency_ms: Math.round(performance.now() - t0),
        migration: current,
        migration_expected: LATEST_MIGRATION,
      };
    } catch (err) {
      database = { ok: false, error: (err as Error).message };
    }
    const [vlm, llm] = await Promise.all([
      chatBackend(ctx.backends.vlm?.client ?? null, 'heuristic'),
      chatBackend(ctx.backends.llm, 'template'),
    ]);
    if (vlm.mode === 'model') vlm.method = 'vlm';
    if (llm.mode === 'model') llm.method = 'llm';
    let yolo: Record<string, unknown>;
    if (ctx.config.yoloModelPath) {
      const readable = await access(ctx.config.yoloModelPath, constants.R_OK).then(
        () => true,
        () => false,
      );
      yolo = { mode: 'model', method: 'yolo', model_file_readable: readable, reachable: readable };
    } else yolo = { mode: 'fallback', method: 'saliency', reachable: null };
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

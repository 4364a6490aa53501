import type { FastifyPluginAsync } from 'fastify';
import type { StageMetrics } from '../metrics.js';

/** GET /metrics: the Prometheus text format (public: counts only, no secrets). */
export const metricsRoutes: FastifyPluginAsync<{ metrics: StageMetrics }> = async (app, opts) => {
  app.get('/metrics', { config: { public: true } }, async (_req, reply) => {
    const body = await opts.metrics.registry.metrics();
    return reply.type(opts.metrics.registry.contentType).send(body);
  });
};

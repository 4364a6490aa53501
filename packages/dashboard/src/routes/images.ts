/**
 * GET /images/:id and /images/:id/thumb (docs/dashboard.md, "Images"): an
 * image_assets row's image, whole or as a thumbnail of at most 320 px. An
 * asset's bytes never change (the storage is content-addressed), so browsers
 * may keep both for a day.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { DashboardContext } from '../context.js';
import { FilterError, isUuid } from '../filters.js';

export const imageRoutes: FastifyPluginAsync<{ ctx: DashboardContext }> = async (app, { ctx }) => {
  app.get<{ Params: { id: string } }>('/images/:id', async (req, reply) => {
    if (!isUuid(req.params.id)) throw new FilterError('id', 'not an image id');
    const img = await ctx.images.full(req.params.id.toLowerCase());
    reply.header('cache-control', 'private, max-age=86400');
    return reply.type(img.type).send(img.bytes);
  });

  app.get<{ Params: { id: string } }>('/images/:id/thumb', async (req, reply) => {
    if (!isUuid(req.params.id)) throw new FilterError('id', 'not an image id');
    const t = await ctx.images.thumbnail(req.params.id.toLowerCase());
    reply.header('cache-control', 'private, max-age=86400');
    reply.header('x-thumbnail', t.made ? 'made' : 'cached');
    return reply.type(t.type).send(t.bytes);
  });
};

/**
 * GET /assets/:id: an image_assets row (uploaded, overlay, planner preview,
 * Instagram feed) streamed from storage, or fetched from an allow-listed
 * URL. Token required when one is set; no path can leave the storage root.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { isRemoteRef, StorageError } from '@feedlyai/pipeline-core';
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox';
import { getAsset } from '../db/queries.js';
import type { StageContext } from '../stages/runner.js';

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const MIME: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.avif': 'image/avif',
};

export const assetRoutes: FastifyPluginAsyncTypebox<{ ctx: StageContext }> = async (app, opts) => {
  const { ctx } = opts;
  app.get(
    '/assets/:id',
    { schema: { params: Type.Object({ id: Type.String({ pattern: UUID }) }) } },
    async (req, reply) => {
      const asset = await getAsset(ctx.pool, req.params.id);
      if (!asset?.image_url) return reply.code(404).send({ error: `asset ${req.params.id} not found` });
      const ref = asset.image_url;
      try {
        if (isRemoteRef(ref)) {
          const bytes = await ctx.storage.readImageUrl(ref, ctx.config.imageFetch);
          return reply.type(asset.mime_type ?? 'application/octet-stream').send(bytes);
        }
        const abs = await ctx.storage.resolve(ref);
        const st = await stat(abs).catch(() => null);
        if (!st?.isFile()) return reply.code(404).send({ error: `asset ${req.params.id}: file missing from storage` });
        const type = asset.mime_type ?? MIME[path.extname(abs).toLowerCase()] ?? 'application/octet-stream';
        reply.header('content-length', String(st.size));
        reply.header('cache-control', 'private, max-age=3600');
        return reply.type(type).send(createReadStream(abs));
      } catch (err) {
        if (err instanceof StorageError) {
          const code =
            err.code === 'not_found' ? 404 : err.code === 'outside_root' || err.code === 'invalid_key' ? 403 : 502;
          req.log.warn({ asset: req.params.id, code: err.code }, 'asset refused');
          return reply.code(code).send({ error: err.message });
        }
        throw err;
      }
    },
  );
};

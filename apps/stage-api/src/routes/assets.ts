/**
 * GET /assets/:id: an image_assets row (uploaded, overlay, planner preview,
 * Instagram feed) streamed from storage, or fetched from an allow-listed
 * URL. Token required when one is set; no path can leave the storage root.
 *
 * Only raster images are served (docs/stage-api.md, "Image assets"): a row
 * whose mime_type is not one of IMAGE_MIME, or whose key or URL ends in an
 * extension that is not an image one, is answered 404, as is a row with
 * neither. Every answer carries `X-Content-Type-Options: nosniff` (app.ts
 * sets it on every route), so a browser never second-guesses the type.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { isRemoteRef, StorageError } from '@feedlyai/storage';
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox';
import { getAsset } from '../db/queries.js';
import type { StageContext } from '../stages/runner.js';

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/** Image extensions and their types. SVG is left out on purpose: it can carry script. */
const MIME_OF_EXT: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.avif': 'image/avif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.heic': 'image/heic',
  '.heif': 'image/heif',
  '.bmp': 'image/bmp',
};
export const IMAGE_MIME: ReadonlySet<string> = new Set(Object.values(MIME_OF_EXT));

/** The extension of a storage key or of a URL's path ('' when none). */
function extensionOf(ref: string): string {
  let p = ref;
  if (isRemoteRef(ref)) {
    try {
      p = new URL(ref).pathname;
    } catch {
      return '';
    }
  }
  return path.posix.extname(p).toLowerCase();
}

/**
 * The Content-Type to serve the asset with, or null when it is not an image:
 * a mime_type that is not an image type, or an extension that is not an image
 * one, or neither known.
 */
export function imageTypeOf(ref: string, mimeType: string | null): string | null {
  const mime = mimeType?.split(';')[0]?.trim().toLowerCase() || null;
  if (mime !== null && !IMAGE_MIME.has(mime)) return null;
  const ext = extensionOf(ref);
  if (ext !== '' && !(ext in MIME_OF_EXT)) return null;
  return mime ?? MIME_OF_EXT[ext] ?? null;
}

export const assetRoutes: FastifyPluginAsyncTypebox<{ ctx: StageContext }> = async (app, opts) => {
  const { ctx } = opts;
  app.get(
    '/assets/:id',
    { schema: { params: Type.Object({ id: Type.String({ pattern: UUID }) }) } },
    async (req, reply) => {
      const asset = await getAsset(ctx.pool, req.params.id);
      if (!asset?.image_url) return reply.code(404).send({ error: `asset ${req.params.id} not found` });
      const ref = asset.image_url;
      const type = imageTypeOf(ref, asset.mime_type);
      if (!type) {
        req.log.warn({ asset: req.params.id, mime_type: asset.mime_type }, 'asset refused: not an image');
        return reply.code(404).send({ error: `asset ${req.params.id} not found (not an image)` });
      }
      try {
        if (isRemoteRef(ref)) {
          const bytes = await ctx.storage.readImageUrl(ref, ctx.config.imageFetch);
          return reply.type(type).send(bytes);
        }
        const abs = await ctx.storage.resolve(ref);
        const st = await stat(abs).catch(() => null);
        if (!st?.isFile()) return reply.code(404).send({ error: `asset ${req.params.id}: file missing from storage` });
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

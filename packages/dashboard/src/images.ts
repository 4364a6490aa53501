/**
 * Images on the dashboard (docs/dashboard.md, "Images"): the input photo,
 * the creatives and the feed image, by image_assets id.
 *
 * - With `storageDir`, read through the shared storage package
 *   (@feedlyai/storage): the row's `image_url` is a key under the storage
 *   root or an `http(s)` URL of an allow-listed host.
 * - Otherwise proxied from the stage server, `STAGE_API_URL/assets/:id`, with
 *   its bearer token (`STAGE_API_TOKEN`).
 *
 * Only raster images are served (PNG, JPEG, WebP, GIF, AVIF, TIFF, HEIF as
 * sharp reads them); anything else is answered 404, like the stage server's
 * own /assets. Thumbnails (at most 320 px on their longest side, WebP) are
 * made once per asset with sharp and kept in a memory cache bounded in bytes;
 * requests for a thumbnail being made wait for it instead of making it again.
 */
import { type FetchLimits, type Storage, StorageError } from '@feedlyai/storage';
import { type Queryable, Semaphore } from '@feedlyai/pipeline-core';
import { LRUCache } from 'lru-cache';
import sharp from 'sharp';
import { Agent, request } from 'undici';

export const THUMBNAIL_MAX_PX = 320;

export class ImageError extends Error {
  constructor(
    readonly statusCode: 404 | 502,
    message: string,
  ) {
    super(message);
    this.name = 'ImageError';
  }
}

/** Reads an asset's bytes by its image_assets id. */
export interface ImageSource {
  readonly kind: 'storage' | 'stage';
  read(assetId: string): Promise<Buffer>;
  close(): Promise<void>;
}

/** Through the storage package (storageDir configured). */
export function storageSource(db: () => Queryable, storage: Storage, limits: FetchLimits): ImageSource {
  return {
    kind: 'storage',
    async read(assetId) {
      const r = await db().query<{ image_url: string | null }>(
        'SELECT image_url FROM image_assets WHERE image_asset_id = $1',
        [assetId],
      );
      const ref = r.rows[0]?.image_url;
      if (!ref) throw new ImageError(404, `image ${assetId} not found`);
      try {
        return await storage.readRef(ref, limits);
      } catch (err) {
        if (err instanceof StorageError) {
          if (err.code === 'not_found') throw new ImageError(404, `image ${assetId}: file missing from storage`);
          if (err.code === 'invalid_key' || err.code === 'outside_root' || err.code === 'host_not_allowed') {
            throw new ImageError(404, `image ${assetId} refused: ${err.message}`);
          }
          throw new ImageError(502, `image ${assetId}: ${err.message}`);
        }
        throw err;
      }
    },
    close: async () => {},
  };
}

export interface StageProxyOptions {
  stageApiUrl: string;
  token: string | null;
  maxBytes: number;
  timeoutMs: number;
}

/** Proxied from the stage server's GET /assets/:id (no storageDir). The agent is this source's own. */
export function stageSource(o: StageProxyOptions): ImageSource {
  const agent = new Agent({ connections: 8, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs });
  const base = o.stageApiUrl.replace(/\/+$/, '');
  return {
    kind: 'stage',
    async read(assetId) {
      let res: Awaited<ReturnType<typeof request>>;
      try {
        res = await request(`${base}/assets/${encodeURIComponent(assetId)}`, {
          dispatcher: agent,
          headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
        });
      } catch (err) {
        throw new ImageError(502, `the stage server did not answer for image ${assetId}: ${(err as Error).message}`);
      }
      if (res.statusCode === 404) {
        await res.body.dump().catch(() => {});
        throw new ImageError(404, `image ${assetId} not found`);
      }
      if (res.statusCode !== 200) {
        await res.body.dump().catch(() => {});
        const hint = res.statusCode === 401 ? ' (STAGE_API_TOKEN missing or wrong)' : '';
        throw new ImageError(502, `the stage server answered ${res.statusCode} for image ${assetId}${hint}`);
      }
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of res.body) {
        total += (chunk as Buffer).length;
        if (total > o.maxBytes) {
          res.body.destroy();
          throw new ImageError(502, `image ${assetId} is larger than ${o.maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      return Buffer.concat(chunks, total);
    },
    close: () => agent.close(),
  };
}

const TYPE_OF_FORMAT: Record<string, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  avif: 'image/avif',
  heif: 'image/heif',
  tiff: 'image/tiff',
};

/** The Content-Type of a raster image sharp can read, or an ImageError (404) for anything else. */
export async function rasterType(bytes: Buffer, assetId: string): Promise<string> {
  let format: string | undefined;
  try {
    format = (await sharp(bytes).metadata()).format;
  } catch {
    format = undefined;
  }
  const type = format ? TYPE_OF_FORMAT[format] : undefined;
  if (!type) throw new ImageError(404, `image ${assetId} is not a raster image`);
  return type;
}

export interface Thumbnail {
  bytes: Buffer;
  type: 'image/webp';
  /** True when this request made it, false when it came from the cache or from a request making it. */
  made: boolean;
}

export interface ImageServiceOptions {
  /** Bound of the thumbnail cache, bytes. */
  cacheBytes: number;
  /** Thumbnails made at once. */
  concurrency?: number;
}

export class ImageService {
  private readonly cache: LRUCache<string, Buffer>;
  private readonly making = new Map<string, Promise<Buffer>>();
  private readonly slots: Semaphore;
  /** Thumbnails made so far (the cache test reads it). */
  made = 0;

  constructor(
    readonly source: ImageSource,
    o: ImageServiceOptions,
  ) {
    this.cache = new LRUCache<string, Buffer>({ maxSize: o.cacheBytes, sizeCalculation: (b) => Math.max(1, b.length) });
    this.slots = new Semaphore(o.concurrency ?? 2);
  }

  get cachedBytes(): number {
    return this.cache.calculatedSize;
  }

  async full(assetId: string): Promise<{ bytes: Buffer; type: string }> {
    const bytes = await this.source.read(assetId);
    return { bytes, type: await rasterType(bytes, assetId) };
  }

  async thumbnail(assetId: string): Promise<Thumbnail> {
    const hit = this.cache.get(assetId);
    if (hit) return { bytes: hit, type: 'image/webp', made: false };
    const pending = this.making.get(assetId);
    if (pending) return { bytes: await pending, type: 'image/webp', made: false };
    const p = this.make(assetId).finally(() => this.making.delete(assetId));
    this.making.set(assetId, p);
    return { bytes: await p, type: 'image/webp', made: true };
  }

  private async make(assetId: string): Promise<Buffer> {
    const bytes = await this.source.read(assetId);
    await rasterType(bytes, assetId);
    const release = await this.slots.acquire();
    try {
      const thumb = await sharp(bytes)
        .rotate()
        .resize({ width: THUMBNAIL_MAX_PX, height: THUMBNAIL_MAX_PX, fit: 'inside', withoutEnlargement: true })
        .webp({ quality: 80 })
        .toBuffer();
      this.made++;
      this.cache.set(assetId, thumb);
      return thumb;
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.source.close();
  }
}

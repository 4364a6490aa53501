import sharp from 'sharp';
import type { RasterImage } from './types.js';

export type ImageErrorCode = 'empty' | 'corrupt' | 'unsupported' | 'too_large';

/** A product image that cannot be used, with a reason a user can act on. */
export class ImageError extends Error {
  readonly code: ImageErrorCode;
  constructor(code: ImageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImageError';
    this.code = code;
  }
}

/** Raster formats we accept (vector and document formats are refused: they can embed or fetch anything). */
export const SUPPORTED_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif', 'heif'] as const;

/** Default pixel limit: 40 megapixels. */
export const DEFAULT_MAX_PIXELS = 40_000_000;

/**
 * Decodes image bytes into RGBA: EXIF orientation applied, alpha flattened
 * onto white, 8 bits per channel. Throws ImageError for empty, corrupt,
 * truncated, unsupported or oversized input.
 */
export async function decodeImage(bytes: Uint8Array, opts: { maxPixels?: number } = {}): Promise<RasterImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(bytes instanceof Uint8Array)) throw new TypeError('decodeImage expects a Uint8Array or Buffer');
  if (bytes.byteLength === 0) throw new ImageError('empty', 'the image is empty (0 bytes)');
  const input = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  let meta: Awaited<ReturnType<ReturnType<typeof sharp>['metadata']>>;
  try {
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (/unsupported image format/i.test(msg)) {
      throw new ImageError(
        'unsupported',
        `the bytes (${bytes.byteLength}) are not an image in a supported format (${SUPPORTED_FORMATS.join(', ')})`,
        { cause: err },
      );
    }
    throw new ImageError('corrupt', `the image header cannot be read: ${msg}`, { cause: err });
  }
  const format = meta.format as string | undefined;
  if (!format || !(SUPPORTED_FORMATS as readonly string[]).includes(format)) {
    throw new ImageError(
      'unsupported',
      `image format '${format ?? 'unknown'}' is not supported (use ${SUPPORTED_FORMATS.join(', ')})`,
    );
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w <= 0 || h <= 0) throw new ImageError('corrupt', 'the image has no dimensions');
  if (w * h > maxPixels) {
    throw new ImageError('too_large', `the image has ${w}x${h} = ${w * h} pixels, more than the limit of ${maxPixels}`);
  }

  try {
    const { data, info } = await sharp(input, { limitInputPixels: maxPixels, failOn: 'error', pages: 1 })
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4 || data.length !== info.width * info.height * 4) {
      throw new ImageError('corrupt', `unexpected decoded layout (${info.channels} channels)`);
    }
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (err) {
    if (err instanceof ImageError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(msg)) {
      throw new ImageError('too_large', `the image exceeds the limit of ${maxPixels} pixels`, { cause: err });
    }
    throw new ImageError('corrupt', `the ${format} image is corrupt or truncated: ${msg.split('\n')[0]}`, {
      cause: err,
    });
  }
}

/** Encodes RGBA to PNG (for tests, debugging and the stages that store images). */
export async function encodePng(img: RasterImage): Promise<Buffer> {
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), {
    raw: { width: img.width, height: img.height, channels: 4 },
  })
    .png()
    .toBuffer();
}

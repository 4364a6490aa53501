/**
 * instagram_feed_gen image: 1080x1350 (4:5 portrait). The whole creative is
 * fitted inside (contain, never cropping its text) with a margin, over a
 * blurred, darkened cover-crop of itself. JPEG quality 90.
 */
import sharp from 'sharp';

export const FEED_WIDTH = 1080;
export const FEED_HEIGHT = 1350;

export async function composeFeedImage(creativePng: Buffer): Promise<Buffer> {
  const meta = await sharp(creativePng).metadata();
  if (!meta.width || !meta.height) throw new Error('the creative has no dimensions');
  const margin = 48;
  const fg = await sharp(creativePng)
    .resize(FEED_WIDTH - 2 * margin, FEED_HEIGHT - 2 * margin, { fit: 'inside', kernel: 'lanczos3' })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const left = Math.round((FEED_WIDTH - fg.info.width) / 2);
  const top = Math.round((FEED_HEIGHT - fg.info.height) / 2);
  // Backdrop and the creative's soft drop shadow are made at a quarter of the
  // size (blurring is the costly part) and scaled up: equally soft, much cheaper.
  const q = 4;
  const sw = FEED_WIDTH / q;
  const sh = Math.round(FEED_HEIGHT / q);
  const blurred = await sharp(creativePng)
    .resize(sw, sh, { fit: 'cover' })
    .removeAlpha()
    .blur(9)
    .modulate({ brightness: 0.55, saturation: 0.9 })
    .raw()
    .toBuffer();
  const shadowRect = {
    create: {
      width: Math.round(fg.info.width / q),
      height: Math.round(fg.info.height / q),
      channels: 4 as const,
      background: { r: 0, g: 0, b: 0, alpha: 0.5 },
    },
  };
  const small = await sharp(blurred, { raw: { width: sw, height: sh, channels: 3 } })
    .composite([{ input: shadowRect, left: Math.round(left / q), top: Math.round((top + 10) / q) }])
    .blur(4.5)
    .removeAlpha()
    .raw()
    .toBuffer();
  return await sharp(
    await sharp(small, { raw: { width: sw, height: sh, channels: 3 } })
      .resize(FEED_WIDTH, FEED_HEIGHT, { fit: 'fill', kernel: 'cubic' })
      .raw()
      .toBuffer(),
    { raw: { width: FEED_WIDTH, height: FEED_HEIGHT, channels: 3 } },
  )
    .composite([{ input: fg.data, raw: { width: fg.info.width, height: fg.info.height, channels: 3 }, left, top }])
    .jpeg({ quality: 90, chromaSubsampling: '4:4:4' })
    .toBuffer();
}

import sharp from 'sharp';
import t, { type Test } from 'tap';
import { analyzeImageHeuristic, decodeImage, ImageError } from '../../src/vision/index.js';
import { fixture, SAMPLES } from './helpers.js';

async function rejectsWith(t: Test, p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  try {
    await p;
    t.fail(`expected ImageError ${code}`);
  } catch (err) {
    t.ok(err instanceof ImageError, 'an ImageError');
    t.equal((err as ImageError).code, code);
    t.match((err as Error).message, message);
  }
}

t.test('decodes every sample photo to RGBA', async (t) => {
  for (const name of SAMPLES) {
    const img = await decodeImage(fixture(name));
    t.ok(img.width > 300 && img.height > 250, `${name}: ${img.width}x${img.height}`);
    t.equal(img.data.length, img.width * img.height * 4);
  }
});

t.test('ImageError for empty, garbage, truncated, unsupported and too large input', async (t) => {
  await rejectsWith(t, decodeImage(new Uint8Array(0)), 'empty', /empty \(0 bytes\)/);
  await rejectsWith(
    t,
    decodeImage(Buffer.from('definitely not an image, just some text bytes')),
    'unsupported',
    /not an image in a supported format/,
  );
  const png = fixture('coffee.png');
  await rejectsWith(t, decodeImage(png.subarray(0, Math.floor(png.length / 2))), 'corrupt', /corrupt or truncated/);
  await rejectsWith(t, decodeImage(png.subarray(0, 120)), 'corrupt', /corrupt or truncated/);
  const svg = Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
  );
  await rejectsWith(t, decodeImage(svg), 'unsupported', /'svg' is not supported/);
  await rejectsWith(
    t,
    decodeImage(png, { maxPixels: 1000 }),
    'too_large',
    /600x400 = 240000 pixels, more than the limit of 1000/,
  );
});

t.test('heuristic analysis: measurements, colours, verdict', async (t) => {
  const img = await decodeImage(fixture('coffee.png'));
  const a = analyzeImageHeuristic(img);
  t.equal(a.usable, true, a.problems.join('; '));
  t.ok(a.dominantColors.length >= 3 && a.dominantColors.every((c) => /^#[0-9a-f]{6}$/.test(c)));
  t.ok((a.metrics?.['sharpness'] ?? 0) > 60);
  t.ok((a.metrics?.['colorfulness'] ?? 0) > 30, 'a warm, colourful shot');
  t.match(a.description, /^A .+ photo \(600x400\).+tones\.$/);
  // A flat grey image is blurry and flat, hence unusable.
  const grey = new Uint8Array(400 * 300 * 4).fill(128);
  const g = analyzeImageHeuristic({ width: 400, height: 300, data: grey });
  t.equal(g.usable, false);
  t.ok(g.problems.some((p) => p.startsWith('blurry')));
  t.ok(g.problems.some((p) => p.startsWith('flat')));
});

t.test('EXIF orientation applied, alpha flattened on white, grey and 16-bit input to RGBA', async (t) => {
  // 40x20 landscape stored with orientation 6 (rotate 90° clockwise to display): 20x40 portrait.
  const rotated = await sharp({ create: { width: 40, height: 20, channels: 3, background: '#336699' } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const r = await decodeImage(rotated);
  t.same([r.width, r.height], [20, 40]);

  const transparent = await sharp({
    create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
  })
    .png()
    .toBuffer();
  const a = await decodeImage(transparent);
  t.same([...a.data.subarray(0, 4)], [255, 255, 255, 255], 'transparent pixels become opaque white');

  const grey16 = await sharp({ create: { width: 6, height: 4, channels: 3, background: '#808080' } })
    .greyscale()
    .toColourspace('grey16')
    .png()
    .toBuffer();
  const g = await decodeImage(grey16);
  t.equal(g.data.length, 6 * 4 * 4);
  t.ok(
    Math.abs(g.data[0]! - 128) <= 1 && g.data[0] === g.data[1] && g.data[3] === 255,
    `grey to RGBA: ${[...g.data.subarray(0, 4)]}`,
  );
});

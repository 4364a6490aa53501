import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RasterImage } from '../../src/vision/types.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const TEST_OUTPUT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test-output');

export const SAMPLES = ['coffee.png', 'chelsea.png', 'rocket.jpg', 'astronaut.png'] as const;

export function fixture(name: string): Buffer {
  return readFileSync(join(FIXTURES, name));
}

/** A solid RGBA image. */
export function solid(width: number, height: number, rgb: [number, number, number]): RasterImage {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    data[i * 4] = rgb[0];
    data[i * 4 + 1] = rgb[1];
    data[i * 4 + 2] = rgb[2];
    data[i * 4 + 3] = 255;
  }
  return { width, height, data };
}

/**
 * The sample photos bundled with this package (assets/, CC0 / public domain,
 * see assets/LICENSE.md). Resolved relative to this module, so the paths work
 * from src/ (tests) and from dist/ (the built CLI and demo).
 */
import { fileURLToPath } from 'node:url';

export const SAMPLE_IMAGES = ['coffee.png', 'chelsea.png'] as const;
export type SampleImage = (typeof SAMPLE_IMAGES)[number];

/** Absolute path of a bundled sample photo (default: the coffee product shot). */
export function samplePhotoPath(name: SampleImage = 'coffee.png'): string {
  return fileURLToPath(new URL(`../assets/${name}`, import.meta.url));
}

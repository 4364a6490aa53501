/**
 * Bounded concurrency per model/resource, without a queue: a stage call
 * either gets a slot at once or is refused (the route answers 429 with
 * Retry-After and the row stays queued). The dispatcher's retry is the queue.
 */
import { RESOURCES, type Resource } from '../config.js';

export interface Slot {
  release(): void;
}

export class ResourceLimiter {
  private readonly inUse = new Map<Resource, number>();
  constructor(private readonly limits: Record<Resource, number>) {
    for (const r of RESOURCES) this.inUse.set(r, 0);
  }

  /** A slot on every named resource, or null when any of them is full (nothing is held then). */
  tryAcquire(resources: readonly Resource[]): Slot | null {
    const unique = [...new Set(resources)];
    if (unique.some((r) => (this.inUse.get(r) ?? 0) >= this.limits[r])) return null;
    for (const r of unique) this.inUse.set(r, (this.inUse.get(r) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        for (const r of unique) this.inUse.set(r, Math.max(0, (this.inUse.get(r) ?? 0) - 1));
      },
    };
  }

  snapshot(): Record<Resource, { inUse: number; limit: number }> {
    return Object.fromEntries(
      RESOURCES.map((r) => [r, { inUse: this.inUse.get(r) ?? 0, limit: this.limits[r] }]),
    ) as Record<Resource, { inUse: number; limit: number }>;
  }
}

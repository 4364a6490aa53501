/**
 * Claims bounded by capacity (docs/healing.md, "claims bounded by capacity").
 *
 * Free slots for a step are `maxInFlight` minus the calls in flight (busy
 * waits and waits for a circuit included), and 0 when the step's circuit is
 * open, when it is half-open and its one probe is taken, or while this
 * instance may be considered dead (its LISTEN connection has been away for a
 * while). `free(step)` is the one capacity check: per-step and per-URL limits
 * plug in there.
 *
 * A slot is taken BEFORE the claim statement, so a claimed row never waits for
 * a slot; a claim that loses gives its slot back. Work that cannot get a slot
 * waits in FIFO order per stage URL (notifications up to `maxWaiting`
 * subjects, beyond that counted and left to the sweep; sweeps resume from
 * their cursor as slots free).
 */
import type { Step } from '../steps.js';
import type { CircuitBreaker } from './breaker.js';

export interface Slot {
  readonly step: Step;
  /** This slot's call is its circuit's half-open probe. */
  readonly probe: boolean;
  release(): void;
}

/** The breakers that gate calls of `step` (its URL's, and its route's when one exists). */
export type CircuitsOf = (step: Step) => readonly CircuitBreaker[];

interface Waiter {
  step: Step;
  /** Subject key for notification waiters (deduplicated); null for others. */
  key: string | null;
  run: (slot: Slot) => void;
  /** Called instead of `run` when the waiter is dropped (engine close). */
  dropped?: (() => void) | undefined;
}

export interface CapacityLimits {
  /** In-flight limit per step (absent: none beyond the total). */
  perStep?: (step: Step) => number | undefined;
  /** In-flight limit per stage base URL (absent: none beyond the total). */
  perUrl?: (url: string) => number | undefined;
}

export class Capacity {
  private used = 0;
  private readonly usedByStep = new Map<Step, number>();
  private readonly usedByUrl = new Map<string, number>();
  private readonly queues = new Map<string, Waiter[]>();
  private readonly keys = new Map<string, Waiter>();
  private rr: string[] = [];
  private notifyWaiting = 0;
  /** Notifications not queued because the FIFO was full (left to the sweep). */
  overflow = 0;
  private pumping = false;

  constructor(
    readonly max: number,
    private readonly circuits: CircuitsOf,
    private readonly urlKeyOf: (step: Step) => string,
    private readonly paused: () => boolean,
    private readonly maxWaiting = 10_000,
    private readonly limits: CapacityLimits = {},
  ) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`maxInFlight must be a positive integer: ${max}`);
  }

  get inUse(): number {
    return this.used;
  }

  get waiting(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  /**
   * The one capacity check: the instance's total, the step's own limit, its
   * stage URL's limit, its circuits, and the pause.
   */
  free(step: Step): number {
    if (this.paused()) return 0;
    let global = this.max - this.used;
    const stepLimit = this.limits.perStep?.(step);
    if (stepLimit !== undefined) global = Math.min(global, stepLimit - (this.usedByStep.get(step) ?? 0));
    const url = this.urlKeyOf(step);
    const urlLimit = this.limits.perUrl?.(url);
    if (urlLimit !== undefined) global = Math.min(global, urlLimit - (this.usedByUrl.get(url) ?? 0));
    if (global <= 0) return 0;
    let probeOnly = false;
    for (const b of this.circuits(step)) {
      if (b.state === 'open') return 0;
      if (b.state === 'half-open') {
        if (!b.probeAvailable) return 0;
        probeOnly = true;
      }
    }
    return probeOnly ? 1 : global;
  }

  /** A slot for a call of `step` now, or null. */
  take(step: Step): Slot | null {
    if (this.free(step) <= 0) return null;
    let probe = false;
    for (const b of this.circuits(step)) {
      if (b.state === 'half-open') {
        if (!b.takeProbe()) return null;
        probe = true;
      }
    }
    this.used++;
    const url = this.urlKeyOf(step);
    this.usedByStep.set(step, (this.usedByStep.get(step) ?? 0) + 1);
    this.usedByUrl.set(url, (this.usedByUrl.get(url) ?? 0) + 1);
    let released = false;
    return {
      step,
      probe,
      release: () => {
        if (released) return;
        released = true;
        this.used--;
        this.usedByStep.set(step, (this.usedByStep.get(step) ?? 1) - 1);
        this.usedByUrl.set(url, (this.usedByUrl.get(url) ?? 1) - 1);
        this.pump();
      },
    };
  }

  /**
   * Runs `run` with a slot now, or queues it (FIFO per stage URL). Returns
   * false when a notification could not be queued (FIFO full: left to the sweep).
   */
  whenFree(step: Step, run: (slot: Slot) => void, key: string | null = null, dropped?: () => void): boolean {
    if (key !== null) {
      const existing = this.keys.get(key);
      if (existing) {
        existing.step = step;
        existing.run = run;
        return true;
      }
    }
    const url = this.urlKeyOf(step);
    const q = this.queues.get(url);
    if (!q || q.length === 0) {
      const slot = this.take(step);
      if (slot) {
        run(slot);
        return true;
      }
    }
    if (key !== null) {
      if (this.notifyWaiting >= this.maxWaiting) {
        this.overflow++;
        return false;
      }
      this.notifyWaiting++;
    }
    const w: Waiter = { step, key, run, dropped };
    if (key !== null) this.keys.set(key, w);
    if (q) q.push(w);
    else {
      this.queues.set(url, [w]);
      this.rr.push(url);
    }
    return true;
  }

  /** Drops a queued notification (the subject moved on, or the engine closes). */
  forget(key: string): void {
    const w = this.keys.get(key);
    if (!w) return;
    this.keys.delete(key);
    this.notifyWaiting--;
    for (const q of this.queues.values()) {
      const i = q.indexOf(w);
      if (i >= 0) {
        q.splice(i, 1);
        break;
      }
    }
  }

  /** Slots in use by one step. */
  inUseBy(step: Step): number {
    return this.usedByStep.get(step) ?? 0;
  }

  /** Hands free slots to waiters, round-robin over the stage URLs. Call after any change. */
  pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      let progressed = true;
      while (progressed && this.used < this.max) {
        progressed = false;
        for (const url of [...this.rr]) {
          const q = this.queues.get(url);
          const head = q?.[0];
          if (!q || !head) continue;
          const slot = this.take(head.step);
          if (!slot) continue;
          q.shift();
          if (head.key !== null) {
            this.keys.delete(head.key);
            this.notifyWaiting--;
          }
          progressed = true;
          head.run(slot);
          if (this.used >= this.max) break;
        }
      }
      for (const url of this.rr) if ((this.queues.get(url)?.length ?? 0) === 0) this.queues.delete(url);
      this.rr = this.rr.filter((url) => this.queues.has(url));
    } finally {
      this.pumping = false;
    }
  }

  /** Empties every queue (engine close); the dropped work is left to the next start's sweep. */
  clear(): void {
    const all = [...this.queues.values()].flat();
    this.queues.clear();
    for (const w of all) w.dropped?.();
    this.keys.clear();
    this.rr = [];
    this.notifyWaiting = 0;
  }
}

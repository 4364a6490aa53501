/**
 * Admission to the bounded resources (docs/stage-api.md, "Admission"): one
 * FIFO per resource (a model, the OCR pool, the renderer: RESOURCES of
 * config.ts) in front of its concurrency limit.
 *
 * - A request that finds a free slot and nobody waiting holds it at once;
 *   otherwise it waits its turn, first come first served. A slot freed by a
 *   release goes straight to the oldest waiter, so nobody overtakes.
 * - A request needing several resources takes them one after the other in
 *   the RESOURCES order, whatever order its stage lists them in: every
 *   request takes them in the same total order, so two requests can never
 *   each hold what the other waits for (no deadlock).
 * - Refused at once (nothing held, nothing started): the queue is full
 *   (`queue_full`), or the estimated wait is longer than the request may
 *   wait (`deadline`). The estimate is the measured drain rate: for each
 *   resource, (waiters ahead + 1) x the mean of its recent service times /
 *   its concurrency. A waiter still without a slot when its longest wait
 *   ends is refused too (`max_wait`), and gives back what it held.
 * - Every refusal carries a Retry-After in whole seconds (at least 1, at
 *   most the configured cap): the time the backlog a newcomer would find
 *   needs to drain at the measured rate, so it grows with the backlog.
 */
import { RESOURCES, type Resource } from '../config.js';

export const REFUSAL_REASONS = ['queue_full', 'deadline', 'max_wait'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** How many recent service times make the mean of a resource. */
const SAMPLES = 32;

export interface AdmissionLimits {
  /** Slots per resource. */
  concurrency: Record<Resource, number>;
  /** Waiters per resource beyond its slots (0: none wait). */
  queue: Record<Resource, number>;
  /** Longest wait per resource in ms; null: half the request's deadline. */
  maxWaitMs: Record<Resource, number | null>;
  /** The most seconds a Retry-After announces. */
  retryAfterCapS: number;
}

/** Called on each admission and refusal (the metrics of metrics.ts). */
export interface AdmissionObserver {
  waited(resource: Resource, seconds: number): void;
  refused(resource: Resource, reason: RefusalReason): void;
}

export interface AcquireOptions {
  /** Longest wait in ms for every resource together; 0: only a free slot will do. */
  maxWaitMs: number;
  /** Aborts the wait (the request's deadline); refused as max_wait. */
  signal?: AbortSignal | undefined;
}

/** The resources a request holds; release() gives them back (idempotent). */
export interface Admission {
  readonly resources: readonly Resource[];
  /** Milliseconds from acquire() until every resource was held. */
  readonly waitMs: number;
  release(): void;
}

export class AdmissionRefused extends Error {
  constructor(
    readonly resource: Resource,
    readonly reason: RefusalReason,
    /** Whole seconds, at least 1. */
    readonly retryAfterS: number,
    /** The estimated wait a newcomer faces now, ms. */
    readonly estimateMs: number,
    /** How long this request waited before it was refused, ms. */
    readonly waitedMs: number,
    /** This resource's queue when refused. */
    readonly queue: { waiting: number; limit: number; inUse: number; concurrency: number },
    message: string,
  ) {
    super(message);
    this.name = 'AdmissionRefused';
  }
}

interface Hold {
  readonly since: number;
}

interface Waiter {
  grant(hold: Hold): void;
  /** Leaves the queue and rejects (the server closes). */
  cancel(): void;
}

/** The server is closing: a waiter is sent away (nothing was started). */
export class AdmissionClosed extends Error {
  constructor() {
    super('the stage server is shutting down');
    this.name = 'AdmissionClosed';
  }
}

/** One resource: its slots, its FIFO and its recent service times. */
class Lane {
  inUse = 0;
  readonly waiters: Waiter[] = [];
  private readonly holds = new Set<Hold>();
  private readonly samples: number[] = [];
  private nextSample = 0;

  constructor(
    readonly resource: Resource,
    readonly concurrency: number,
    readonly queueLimit: number,
    private readonly now: () => number,
  ) {}

  get free(): boolean {
    return this.inUse < this.concurrency && this.waiters.length === 0;
  }

  /**
   * Mean of the recent service times; before any, the longest time a current
   * holder has held its slot (a lower bound of its service time); 0 when idle.
   */
  meanServiceMs(): number {
    if (this.samples.length > 0) return this.recentMeanMs();
    const t = this.now();
    let longest = 0;
    for (const h of this.holds) longest = Math.max(longest, t - h.since);
    return longest;
  }

  /** Mean of the recent service times, 0 before any. */
  recentMeanMs(): number {
    return this.samples.length > 0 ? this.samples.reduce((a, b) => a + b, 0) / this.samples.length : 0;
  }

  /** Estimated ms until a request arriving now holds a slot here. */
  estimateMs(): number {
    if (this.free) return 0;
    return ((this.waiters.length + 1) * this.meanServiceMs()) / this.concurrency;
  }

  private hold(): Hold {
    this.inUse++;
    const h = { since: this.now() };
    this.holds.add(h);
    return h;
  }

  /** A slot now, or null. */
  tryTake(): Hold | null {
    return this.free ? this.hold() : null;
  }

  /** Joins the FIFO; resolves with a slot, rejects with the reason when `until` passes or `signal` fires. */
  wait(until: number, signal: AbortSignal | undefined): Promise<Hold> {
    return new Promise<Hold>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const leave = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        leave();
        reject(new Error('aborted'));
      };
      const waiter: Waiter = {
        grant: (h) => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(h);
        },
        cancel: () => {
          leave();
          reject(new AdmissionClosed());
        },
      };
      this.waiters.push(waiter);
      timer = setTimeout(
        () => {
          leave();
          reject(new Error('max wait'));
        },
        Math.max(0, until - this.now()),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Sends every waiter away. */
  cancelAll(): void {
    for (const w of [...this.waiters]) w.cancel();
  }

  release(h: Hold): void {
    if (!this.holds.delete(h)) return;
    this.inUse--;
    const served = this.now() - h.since;
    if (this.samples.length < SAMPLES) this.samples.push(served);
    else this.samples[this.nextSample] = served;
    this.nextSample = (this.nextSample + 1) % SAMPLES;
    // The freed slot goes to the oldest waiter at once: nobody arriving meanwhile can take it.
    while (this.inUse < this.concurrency && this.waiters.length > 0) {
      const w = this.waiters.shift() as Waiter;
      w.grant(this.hold());
    }
  }
}

export interface ResourceSnapshot {
  inUse: number;
  limit: number;
  queued: number;
  queueLimit: number;
  /** Mean of the recent service times (ms), 0 before any. */
  meanServiceMs: number;
}

export class AdmissionQueues {
  private readonly lanes: Record<Resource, Lane>;
  private closed = false;

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly observer: AdmissionObserver | null = null,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.lanes = Object.fromEntries(
      RESOURCES.map((r) => [r, new Lane(r, limits.concurrency[r], limits.queue[r], now)]),
    ) as Record<Resource, Lane>;
  }

  /** The resources in acquisition order (RESOURCES), each once. */
  static order(resources: readonly Resource[]): Resource[] {
    return RESOURCES.filter((r) => resources.includes(r));
  }

  /**
   * How long a request may wait for `resources`: the smallest configured
   * maximum among them, else half its deadline's budget; never past its
   * deadline (`leftMs`).
   */
  maxWaitMs(resources: readonly Resource[], budgetMs: number, leftMs: number): number {
    let max = Math.floor(budgetMs / 2);
    const configured = AdmissionQueues.order(resources)
      .map((r) => this.limits.maxWaitMs[r])
      .filter((v): v is number => v !== null);
    if (configured.length > 0) max = Math.min(...configured);
    return Math.max(0, Math.min(max, leftMs));
  }

  /** The estimated wait of a request for `resources` arriving now, ms. */
  estimateMs(resources: readonly Resource[]): number {
    return AdmissionQueues.order(resources).reduce((sum, r) => sum + this.lanes[r].estimateMs(), 0);
  }

  /** Retry-After for `resources` now: the estimated wait in whole seconds, from 1 to the cap. */
  retryAfterS(resources: readonly Resource[]): number {
    const s = Math.ceil(this.estimateMs(resources) / 1000);
    return Math.min(this.limits.retryAfterCapS, Math.max(1, s));
  }

  /**
   * Every resource, in order; resolves once all are held, or rejects with
   * AdmissionRefused (or AdmissionClosed once close() was called).
   */
  async acquire(resources: readonly Resource[], opts: AcquireOptions): Promise<Admission> {
    if (this.closed) throw new AdmissionClosed();
    const order = AdmissionQueues.order(resources);
    const t0 = this.now();
    // Refused at once: a full queue, or a wait longer than this request may wait.
    let total = 0;
    let longest: { r: Resource; ms: number } | null = null;
    for (const r of order) {
      const lane = this.lanes[r];
      if (!lane.free && lane.waiters.length >= lane.queueLimit) throw this.refuse(order, r, 'queue_full', t0);
      const ms = lane.estimateMs();
      total += ms;
      if (!longest || ms > longest.ms) longest = { r, ms };
    }
    if (longest && total > opts.maxWaitMs) throw this.refuse(order, longest.r, 'deadline', t0, opts.maxWaitMs);

    const until = t0 + opts.maxWaitMs;
    const held: Array<{ lane: Lane; hold: Hold }> = [];
    const giveBack = () => {
      for (const { lane, hold } of held.splice(0).reverse()) lane.release(hold);
    };
    for (const r of order) {
      const lane = this.lanes[r];
      const started = this.now();
      let hold = lane.tryTake();
      if (!hold) {
        if (lane.waiters.length >= lane.queueLimit) {
          giveBack();
          throw this.refuse(order, r, 'queue_full', t0);
        }
        try {
          hold = await lane.wait(until, opts.signal);
        } catch (err) {
          giveBack();
          if (err instanceof AdmissionClosed) throw err;
          throw this.refuse(order, r, 'max_wait', t0, opts.maxWaitMs);
        }
      }
      held.push({ lane, hold });
      this.observer?.waited(r, (this.now() - started) / 1000);
    }
    const waitMs = this.now() - t0;
    let released = false;
    return {
      resources: order,
      waitMs,
      release: () => {
        if (released) return;
        released = true;
        giveBack();
      },
    };
  }

  private refuse(
    order: Resource[],
    r: Resource,
    reason: RefusalReason,
    t0: number,
    maxWaitMs?: number,
  ): AdmissionRefused {
    this.observer?.refused(r, reason);
    const lane = this.lanes[r];
    const estimateMs = this.estimateMs(order);
    const waitedMs = this.now() - t0;
    const queue = {
      waiting: lane.waiters.length,
      limit: lane.queueLimit,
      inUse: lane.inUse,
      concurrency: lane.concurrency,
    };
    const busy = `${lane.inUse} of ${lane.concurrency} running, ${lane.waiters.length} of ${lane.queueLimit} waiting`;
    const message =
      reason === 'queue_full'
        ? `the ${r} queue is full (${busy})`
        : reason === 'deadline'
          ? `the wait for ${r} (about ${Math.round(estimateMs)} ms at the measured rate; ${busy}) is longer than this request may wait (${maxWaitMs} ms)`
          : `no ${r} slot within this request's longest wait (${maxWaitMs} ms; ${busy})`;
    return new AdmissionRefused(r, reason, this.retryAfterS(order), estimateMs, waitedMs, queue, message);
  }

  /**
   * The server is closing: every waiter is sent away (AdmissionClosed, nothing
   * started) and no new request is admitted; those holding slots finish.
   */
  close(): void {
    this.closed = true;
    for (const r of RESOURCES) this.lanes[r].cancelAll();
  }

  snapshot(): Record<Resource, ResourceSnapshot> {
    return Object.fromEntries(
      RESOURCES.map((r) => {
        const l = this.lanes[r];
        return [
          r,
          {
            inUse: l.inUse,
            limit: l.concurrency,
            queued: l.waiters.length,
            queueLimit: l.queueLimit,
            meanServiceMs: Math.round(l.recentMeanMs()),
          },
        ];
      }),
    ) as Record<Resource, ResourceSnapshot>;
  }
}

/**
 * Outcomes that must not be lost when the database is away for a moment
 * (docs/healing.md, "database loss at an instance"): a retry claim, a give-up,
 * a rejection, a time-out and the run log's outcomes. A write that fails
 * because the database cannot be reached is kept in memory (bounded) and
 * tried again every `retryMs` until it goes through; nothing is dropped and
 * left to a rescue timer. A write that fails for another reason (a bug, a
 * constraint) is tried a few times, then reported and dropped.
 *
 * The same loop notices when the database is back (`onBack`), which is when
 * the engine re-sends its own `queued` rows whose calls did not complete.
 */
import type { EngineLogger } from '../logger.js';

/** Whether an error means "the database could not be reached" (worth waiting for) rather than a bug. */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^08/.test(code) || /^57P0[1-4]$/.test(code) || code === '53300' || code === '57014') return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN'].includes(code)) {
    return true;
  }
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended|not queryable|the database system is (starting up|shutting down|in recovery)|terminating connection|Query read timeout/i.test(
    msg,
  );
}

interface Pending {
  what: string;
  run: () => Promise<void>;
  tries: number;
}

export interface DurableWritesOptions {
  log: EngineLogger;
  /** Cheap query that succeeds when the database is reachable (SELECT 1). */
  ping: () => Promise<unknown>;
  /** Called once per recovery of the database (first successful query after a failure). */
  onBack: () => void;
  retryMs?: number;
  maxPending?: number;
  maxBugTries?: number;
}

export class DurableWrites {
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;
  private down = false;
  private closed = false;
  private draining: Promise<void> | null = null;
  /** Writes dropped (bound reached, or failing for another reason than the connection). */
  dropped = 0;
  /** Writes that failed at first and went through later. */
  deferred = 0;

  constructor(private readonly o: DurableWritesOptions) {}

  get size(): number {
    return this.pending.length;
  }

  /** Whether the last contact with the database failed. */
  get databaseDown(): boolean {
    return this.down;
  }

  /**
   * Runs `fn`; if it fails, keeps it and tries again until it goes through.
   * Resolves after the first try either way (the caller does not wait for the database).
   */
  async do(what: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.failed({ what, run: fn, tries: 1 }, err);
    }
  }

  /** A query of the caller failed with `err`: note the database being away (for onBack). */
  noteError(err: unknown): void {
    if (isConnectionError(err)) this.markDown();
  }

  private markDown(): void {
    this.down = true;
    this.schedule();
  }

  private failed(p: Pending, err: unknown): void {
    const conn = isConnectionError(err);
    if (!conn && p.tries >= (this.o.maxBugTries ?? 5)) {
      this.dropped++;
      this.o.log.error(
        { what: p.what, err: (err as Error)?.message ?? String(err) },
        'listener error: outcome could not be written, dropped',
      );
      return;
    }
    if (this.pending.length >= (this.o.maxPending ?? 10_000)) {
      this.dropped++;
      this.o.log.error(
        { what: p.what, pending: this.pending.length },
        'listener error: too many outcomes waiting for the database, dropped',
      );
      return;
    }
    if (p.tries === 1)
      this.o.log.warn(
        { what: p.what, err: (err as Error)?.message ?? String(err) },
        'outcome kept until the database is back',
      );
    this.pending.push(p);
    if (conn) this.down = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.drain();
    }, this.o.retryMs ?? 1_000);
  }

  /** Tries every kept write once (in order); notices the database coming back. */
  drain(): Promise<void> {
    if (this.draining) return this.draining;
    this.draining = (async () => {
      if (this.down) {
        try {
          await this.o.ping();
        } catch {
          this.schedule();
          return;
        }
        this.down = false;
        this.o.log.info({ kept: this.pending.length }, 'PostgreSQL reachable again');
        this.o.onBack();
      }
      const batch = this.pending;
      this.pending = [];
      for (const p of batch) {
        try {
          await p.run();
          this.deferred++;
        } catch (err) {
          this.failed({ ...p, tries: p.tries + 1 }, err);
        }
      }
    })().finally(() => {
      this.draining = null;
    });
    return this.draining;
  }

  /** Last chance on close: one more try of everything kept; what still fails is reported. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.draining) await this.draining;
    const batch = this.pending;
    this.pending = [];
    for (const p of batch) {
      try {
        await p.run();
      } catch (err) {
        this.dropped++;
        this.o.log.error(
          { what: p.what, err: (err as Error)?.message ?? String(err) },
          'listener error: outcome not written before close',
        );
      }
    }
  }
}

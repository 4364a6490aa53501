/**
 * Recovery sweeps (docs/healing.md, "recovery that cannot be starved"): read
 * every row that may need a transition, decide per row with `decide()`, and
 * act through the engine. A sweep claims at most the free slots; when none is
 * free it waits for one in FIFO order with the live work and resumes from its
 * cursor, not at the next interval.
 *
 * One full sweep at a time: a request while one runs makes it run once more
 * when it ends. Sweeps scoped to one job run beside it.
 */
import type { Queryable } from '../db.js';
import type { EngineLogger } from '../logger.js';
import type { FanInPolicy } from '../sql/claimFanIn.js';
import { liveInstances } from '../sql/instances.js';
import {
  type RecoveryRow,
  type ScanCursor,
  type ScanPage,
  scanFanInPage,
  scanJobPage,
  scanQueued,
  scanRequestedDone,
  scanVariantPage,
} from '../sql/recoveryScan.js';
import { FAN_IN_TO, type Step, type StepDefinition } from '../steps.js';
import type { Capacity, Slot } from './capacity.js';
import type { Circuits } from './circuits.js';
import { type Decision, decide, type RowFacts, targetStep } from './decide.js';
import { isConnectionError } from './durable.js';

export interface RecoverResult {
  scanned: number;
  recovered: number;
}

export interface SweepScope {
  jobId?: string | undefined;
  /** Look back at least this far, whatever the recovery window (a circuit that was open that long). */
  sinceMs?: number | undefined;
  /** Only the `queued` rows of these claimers (dead instances found by the liveness check). */
  claimers?: readonly string[] | undefined;
  /**
   * Run now even if a full sweep is in progress (after a reconnect, or the
   * database coming back: the sweep in progress may be stuck on a connection
   * of the path that just died; its later claims are guarded, so letting it
   * finish beside this one is harmless).
   */
  fresh?: boolean | undefined;
  /**
   * Called once when the sweep first has to wait for a free slot (the work it
   * found is in motion; the rest follows as slots free), or when it ends.
   */
  onBusy?: (() => void) | undefined;
}

export interface SweepHost {
  pool: Queryable;
  graph: Readonly<Record<Step, StepDefinition>>;
  fanInPolicy: FanInPolicy;
  self: string;
  deadAfterMs: number;
  windowSeconds: number;
  /** Running rows younger than this cannot be past their deadline (the smallest rescue timeout). */
  minRescueAfterMs: number;
  log: EngineLogger;
  capacity: Capacity;
  circuits: Circuits;
  closing(): boolean;
  /** This instance is delivering the row's current attempt, or ended its flight at or after `since`. */
  inFlight(row: RecoveryRow, since: number): boolean;
  /** Carries out one decision with `slot` (null for decisions that send nothing). True when it moved the row. */
  act(row: RecoveryRow, d: Decision, slot: Slot | null): Promise<boolean>;
  /** Claims the next step of `done` variants in one statement, one slot each; returns how many were claimed. */
  claimNextBatch(prev: Step, rows: RecoveryRow[], slots: Slot[]): Promise<number>;
  /** The fan-in claim of one job. */
  fanIn(jobId: string, hasSuccess: boolean, slot: Slot | null): Promise<boolean>;
}

export class Recovery {
  private running: Promise<RecoverResult> | null = null;
  private again: {
    scope: SweepScope;
    waiters: Array<{ resolve: (r: RecoverResult) => void; reject: (err: unknown) => void }>;
  } | null = null;
  runs = 0;

  constructor(private readonly h: SweepHost) {}

  /** A full sweep now (or right after the one in progress). */
  sweep(scope: SweepScope = {}): Promise<RecoverResult> {
    if (scope.jobId !== undefined || scope.claimers || scope.fresh) return this.run(scope);
    if (!this.running) {
      const p = this.run(scope);
      this.running = p;
      const next = () => {
        this.running = null;
        const again = this.again;
        this.again = null;
        if (!again) return;
        // The follow-up's outcome goes to the callers that asked for it (a failure included).
        this.sweep(again.scope).then(
          (r) => {
            for (const w of again.waiters) w.resolve(r);
          },
          (err: unknown) => {
            for (const w of again.waiters) w.reject(err);
          },
        );
      };
      p.then(next, next);
      return p;
    }
    if (!this.again) this.again = { scope: {}, waiters: [] };
    if (scope.sinceMs) this.again.scope.sinceMs = Math.max(this.again.scope.sinceMs ?? 0, scope.sinceMs);
    const again = this.again;
    return new Promise((resolve, reject) => again.waiters.push({ resolve, reject }));
  }

  private async run(scope: SweepScope): Promise<RecoverResult> {
    if (this.h.closing()) return { scanned: 0, recovered: 0 };
    this.runs++;
    const h = this.h;
    let scanned = 0;
    let recovered = 0;
    const windowSeconds = Math.max(h.windowSeconds, Math.ceil((scope.sinceMs ?? 0) / 1000) + 60);
    const live = new Set(await liveInstances(h.pool, h.deadAfterMs));
    live.add(h.self);
    // Reads below are older than anything this instance learns after this moment.
    let readAt = performance.now();

    // 1. Claimed (`queued`) rows: own without a call in flight, dead or missing claimers, requested.
    const queued = await scanQueued(h.pool, {
      self: h.self,
      claimers: scope.claimers ?? 'all-but-live-peers',
      live: [...live],
      jobId: scope.jobId,
    });
    scanned += queued.length;
    recovered += await this.each(queued, live, readAt, scope);

    if (!scope.claimers) {
      // 2. `done` rows an operator's retry asked to dispatch, whatever their age.
      readAt = performance.now();
      const requested = await scanRequestedDone(h.pool, scope.jobId);
      scanned += requested.length;
      recovered += await this.each(requested, live, readAt, scope);

      // 3. Variants, then job-level rows: keyset pages over the window.
      for (const page of [scanVariantPage, scanJobPage]) {
        let cursor: ScanCursor | null = null;
        do {
          if (h.closing()) break;
          readAt = performance.now();
          const p: ScanPage = await page(h.pool, {
            windowSeconds,
            runningOlderThanMs: h.minRescueAfterMs,
            cursor,
            jobId: scope.jobId,
          });
          scanned += p.rows.length;
          recovered += await this.each(p.rows, live, readAt, scope);
          cursor = p.next;
        } while (cursor);
      }

      // 4. Fan-in candidates, in keyset pages of the jobs in the variant phase.
      let fanCursor: string | null = null;
      do {
        if (h.closing()) break;
        const fp = await scanFanInPage(h.pool, {
          windowSeconds,
          policy: h.fanInPolicy,
          cursor: fanCursor,
          jobId: scope.jobId,
        });
        scanned += fp.candidates.length;
        for (const f of fp.candidates) {
          if (h.closing()) break;
          const slot = f.hasSuccess ? await this.slotFor(FAN_IN_TO, scope) : null;
          if (f.hasSuccess && !slot) continue;
          try {
            if (await h.fanIn(f.jobId, f.hasSuccess, slot)) recovered++;
          } catch (err) {
            if (isConnectionError(err)) throw err;
            h.log.error({ job_id: f.jobId, err: (err as Error).message }, 'listener error: fan-in recovery failed');
          }
        }
        fanCursor = fp.next;
      } while (fanCursor);
    }
    scope.onBusy?.();
    h.log.info({ scanned, recovered, job_id: scope.jobId }, 'recovery check');
    if (recovered > 0) h.log.info({ recovered, job_id: scope.jobId }, 'lagging variants recovered');
    return { scanned, recovered };
  }

  /** Decides and acts on each row; `done` variants of one step are claimed in batches. */
  private async each(
    rows: RecoveryRow[],
    live: ReadonlySet<string>,
    readAt: number,
    scope: SweepScope,
  ): Promise<number> {
    const h = this.h;
    let recovered = 0;
    const batches = new Map<Step, RecoveryRow[]>();
    for (const row of rows) {
      if (h.closing()) break;
      const facts: RowFacts = { ...row, variant: row.jobVariantsId !== null };
      const target = targetStep(facts);
      const ctx = {
        def: h.graph[row.step],
        fanInPolicy: h.fanInPolicy,
        self: h.self,
        live,
        deadAfterMs: h.deadAfterMs,
        circuit: target ? h.circuits.stateFor(target) : ('closed' as const),
        // Whether a slot is free is decided below (a sweep waits for one instead of skipping).
        freeSlots: 1,
        inFlight: h.inFlight(row, readAt - 1_000),
      };
      const d = decide(facts, ctx);
      if (d.kind === 'wait') continue;
      if (d.kind === 'claim-next' && row.jobVariantsId && !row.dispatchRequested) {
        const list = batches.get(row.step) ?? [];
        list.push(row);
        batches.set(row.step, list);
        continue;
      }
      try {
        const needsSlot = d.kind !== 'give-up' && target !== null;
        const slot = needsSlot ? await this.slotFor(target, scope) : null;
        if (needsSlot && !slot) continue;
        // Waiting for the slot can take a while: the flight that was delivering this attempt may
        // have ended meanwhile (and the row moved on), which this page's read cannot show. A
        // re-send has no guard in the database, so it is re-checked against what we know now.
        if (d.kind === 'resend-own' && h.inFlight(row, readAt - 1_000)) {
          slot?.release();
          continue;
        }
        if (await h.act(row, d, slot)) recovered++;
      } catch (err) {
        // The database went away: this sweep ends here; the one that runs when it is back redoes it.
        if (isConnectionError(err)) throw err;
        h.log.error(
          {
            job_id: row.jobId,
            job_variants_id: row.jobVariantsId ?? undefined,
            step: row.step,
            err: (err as Error).message,
          },
          'listener error: recovery of a row failed',
        );
      }
    }
    for (const [prev, list] of batches) {
      const target = targetStep({ step: prev, status: 'done', variant: true }) as Step;
      let i = 0;
      while (i < list.length && !h.closing()) {
        const first = await this.slotFor(target, scope);
        if (!first) break;
        const slots = [first];
        const want = Math.min(list.length - i, 500);
        while (slots.length < want) {
          const s = h.capacity.take(target);
          if (!s) break;
          slots.push(s);
        }
        const chunk = list.slice(i, i + slots.length);
        i += slots.length;
        try {
          recovered += await h.claimNextBatch(prev, chunk, slots);
        } catch (err) {
          for (const s of slots) s.release();
          if (isConnectionError(err)) throw err;
          h.log.error(
            { step: prev, variants: chunk.length, err: (err as Error).message },
            'listener error: recovery of a batch failed',
          );
        }
      }
    }
    return recovered;
  }

  /**
   * A slot for a call of `step`: at once, or when one frees (FIFO with the live work).
   * Null when the step's circuit is open (the row waits for the circuit-close sweep) or the engine closes.
   */
  private slotFor(step: Step, scope: SweepScope): Promise<Slot | null> {
    if (this.h.circuits.stateFor(step) === 'open' || this.h.closing()) return Promise.resolve(null);
    const now = this.h.capacity.take(step);
    if (now) return Promise.resolve(now);
    scope.onBusy?.();
    return new Promise((resolve) => {
      this.h.capacity.whenFree(step, resolve, null, () => resolve(null));
    });
  }
}

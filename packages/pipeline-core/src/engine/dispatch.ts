/**
 * Flights: a claimed attempt being delivered to its stage (docs/healing.md).
 * A flight holds one capacity slot from its claim to its end, so a claimed
 * row never waits for a slot, and sends the SAME attempt until an answer
 * settles it:
 *
 * - it waits while the step's circuit is open (or while this instance may be
 *   considered dead), unless it is the circuit's half-open probe;
 * - after a non-2xx answer or no answer it re-reads the row once and acts by
 *   the answer table (answers.ts): busy -> wait Retry-After; service failure
 *   -> the breaker counts it and the flight tries again when the circuit
 *   allows (no attempt used); a failure the stage recorded -> the retry rule;
 *   no answer by the deadline with the row still running -> rescue at once;
 *   anything that shows someone else moved the row -> nothing.
 *
 * `queued` rows of a live claimer are therefore never rescued by a timer: the
 * claimer keeps re-sending them itself.
 */
import { ROOT_CONTEXT, type Span, trace } from '@opentelemetry/api';
import type { Queryable } from '../db.js';
import type { EngineLogger } from '../logger.js';
import { sleep } from '../semaphore.js';
import { readSubject, type SubjectState } from '../sql/readSubject.js';
import type { RunLogWriter, RunState } from '../sql/stepRuns.js';
import type { ClaimedStep } from '../sql/types.js';
import type { Step, StepDefinition } from '../steps.js';
import { type AnswerAction, classifyAnswer, needsReread, type StageAnswer } from './answers.js';
import type { CircuitBreaker } from './breaker.js';
import type { Capacity, Slot } from './capacity.js';
import type { Circuits } from './circuits.js';
import type { DurableWrites } from './durable.js';
import type { StageClient } from './stage-client.js';
import { endDispatchSpan, startDispatchSpan, stepAttributes } from './tracing.js';

/** How long after the deadline the dispatcher still waits for an answer. */
export const DEADLINE_GRACE_MS = 5_000;

export interface FlightOutcomes {
  /** 2xx (or a lost answer of a finished attempt). */
  succeeded(c: ClaimedStep, status: number | null, durationMs: number): void;
  /** The stage recorded (step,'failed'): the retry rule or a give-up. */
  failed(c: ClaimedStep, status: number | null, error: string): Promise<void>;
  /** 400/422: give up at once. */
  rejected(c: ClaimedStep, status: number, error: string): Promise<void>;
  /** No answer by the deadline, the row still running with our attempt: rescue it now. */
  rescue(c: ClaimedStep): Promise<ClaimedStep | null>;
  /** Counted events. */
  count(name: 'serviceFailures' | 'busyWaits' | 'resends' | 'skips'): void;
}

export interface FlightsOptions {
  pool: Queryable;
  client: StageClient;
  capacity: Capacity;
  circuits: Circuits;
  graph: Readonly<Record<Step, StepDefinition>>;
  urlOf: (step: Step) => string;
  log: EngineLogger;
  durable: DurableWrites;
  runLog: RunLogWriter;
  outcomes: FlightOutcomes;
  random: () => number;
  /** This instance may be considered dead by its peers: send nothing until it is sure again. */
  paused: () => boolean;
  track: <T>(p: Promise<T>) => Promise<T>;
  retryAfterCapMs?: number;
  /** This instance's id, an attribute of its dispatch spans. */
  instanceId?: string;
}

interface Flight {
  claimed: ClaimedStep;
  slot: Slot;
  /** When the first request of this attempt left (run log sent_at). */
  sentAt: Date | null;
  started: number;
  sends: number;
  serviceFailuresInRow: number;
  /** The next send is this flight's circuit probe. */
  probe: boolean;
  /** Set while waiting at the gate. */
  wake: (() => void) | null;
  abort: AbortController;
  /** A request of this flight is at the stage now. */
  inRequest: boolean;
  /** A newer attempt of the same step replaced this flight (a rescue after the deadline). */
  supersededBy: number | null;
  /** The dispatch span of the current attempt (docs/tracing.md); null once ended. */
  span: Span | null;
}

export function subjectKey(c: { jobId: string; jobVariantsId: string | null }): string {
  return c.jobVariantsId ? `v:${c.jobVariantsId}` : `j:${c.jobId}`;
}

/**
 * Flights are keyed by subject AND step: the next step of a variant is often
 * claimed (on the stage's `done` notification) before the previous step's
 * HTTP answer has been read.
 */
export function flightKey(c: { jobId: string; jobVariantsId: string | null; step: Step }): string {
  return `${subjectKey(c)}|${c.step}`;
}

export class Flights {
  private readonly active = new Map<string, Flight>();
  /** Attempts whose flight ended lately (flight key|attempt -> performance.now()), for the sweep's stale reads. */
  private readonly ended = new Map<string, number>();
  /** Flights waiting at the gate, oldest first. */
  private readonly waiting = new Set<Flight>();
  private closing = false;
  /** No flight starts a new request (engine closing); calls at a stage may still finish. */
  private stopping = false;

  constructor(private readonly o: FlightsOptions) {}

  get size(): number {
    return this.active.size;
  }

  /** Whether this instance is delivering `attempt` (any attempt when omitted) of the subject's step. */
  has(s: { jobId: string; jobVariantsId: string | null; step: Step }, attempt?: number): boolean {
    const f = this.active.get(flightKey(s));
    return !!f && (attempt === undefined || f.claimed.attempt === attempt);
  }

  /**
   * Whether this instance ended a flight of that attempt at or after `since`
   * (performance.now()). A sweep that read the row as `queued` before that
   * moment must not send it again: its read is older than what we know.
   */
  endedSince(s: { jobId: string; jobVariantsId: string | null; step: Step }, attempt: number, since: number): boolean {
    const at = this.ended.get(`${flightKey(s)}|${attempt}`);
    return at !== undefined && at >= since;
  }

  /** Claimed attempts being delivered (subject key, step, attempt). */
  list(): ClaimedStep[] {
    return [...this.active.values()].map((f) => f.claimed);
  }

  /** Starts delivering a claimed attempt; `slot` is released when the flight ends. */
  start(claimed: ClaimedStep, slot: Slot): void {
    const key = flightKey(claimed);
    const prev = this.active.get(key);
    if (prev && prev.claimed.attempt >= claimed.attempt) {
      // Already delivering this attempt (a re-send found by a sweep racing the flight).
      slot.release();
      return;
    }
    const f: Flight = {
      claimed,
      slot,
      sentAt: null,
      started: performance.now(),
      sends: 0,
      serviceFailuresInRow: 0,
      probe: slot.probe,
      wake: null,
      abort: new AbortController(),
      inRequest: false,
      supersededBy: null,
      span: startDispatchSpan(claimed, this.o.instanceId),
    };
    if (prev) {
      prev.supersededBy = claimed.attempt;
      prev.abort.abort();
    }
    f.abort.signal.addEventListener('abort', () => this.wakeOne(f), { once: true });
    this.active.set(key, f);
    void this.o.track(
      this.fly(f)
        .catch((err: unknown) =>
          this.o.log.error(
            { ...fields(f.claimed), err: (err as Error)?.message ?? String(err) },
            'listener error: dispatch failed',
          ),
        )
        .finally(() => {
          const now = performance.now();
          this.ended.set(`${key}|${f.claimed.attempt}`, now);
          if (this.ended.size > 50_000 || this.ended.size % 1000 === 0) {
            for (const [k, at] of this.ended) if (now - at > 120_000) this.ended.delete(k);
          }
          if (this.active.get(key) === f) this.active.delete(key);
          this.waiting.delete(f);
          f.slot.release();
          // A flight that ended without an outcome (no route, an error) still ends its span.
          if (f.span) endDispatchSpan(f.span, 'error', null, 'flight ended without an outcome');
          f.span = null;
        }),
    );
  }

  /** A circuit went half-open: the oldest waiting flight it gates sends the probe. */
  halfOpen(b: CircuitBreaker): boolean {
    for (const f of this.waiting) {
      const gates = this.o.circuits.of(f.claimed.step);
      if (!gates.includes(b)) continue;
      if (gates.some((g) => g !== b && g.state !== 'closed')) continue;
      if (!b.takeProbe()) return false;
      f.probe = true;
      this.wakeOne(f);
      return true;
    }
    return false;
  }

  /** Something changed (a circuit closed, the pause ended): every waiting flight re-checks its gate. */
  wakeAll(): void {
    for (const f of [...this.waiting]) this.wakeOne(f);
  }

  /** Drops flights whose rows are no longer ours (after a long disconnection: a peer may have re-dispatched them). */
  async revalidate(): Promise<number> {
    let dropped = 0;
    for (const f of [...this.active.values()]) {
      let now: SubjectState | null;
      try {
        now = await readSubject(this.o.pool, f.claimed);
      } catch {
        continue;
      }
      if (!now || now.step !== f.claimed.step || now.attempt !== f.claimed.attempt) {
        f.abort.abort();
        dropped++;
      }
    }
    return dropped;
  }

  /**
   * Close, first stage: flights that are waiting (for a circuit, a Retry-After,
   * a re-send) end now; flights with a request at a stage end when it answers.
   */
  stopWaiting(): void {
    this.stopping = true;
    for (const f of this.active.values()) if (!f.inRequest) f.abort.abort();
  }

  /** Stops every flight (their rows stay as they are; a clean stop lets peers re-dispatch them). */
  close(): void {
    this.closing = true;
    for (const f of this.active.values()) f.abort.abort();
    this.wakeAll();
  }

  private wakeOne(f: Flight): void {
    const w = f.wake;
    f.wake = null;
    this.waiting.delete(f);
    w?.();
  }

  /** Resolves 'go' when the flight may send, 'stop' when it must end. */
  private async gate(f: Flight): Promise<'go' | 'stop'> {
    for (;;) {
      if (this.closing || this.stopping || f.abort.signal.aborted) return 'stop';
      if (!this.o.paused()) {
        if (f.probe) return 'go';
        if (this.o.circuits.closedFor(f.claimed.step)) return 'go';
        // Half-open with nobody probing yet: this flight can take the probe itself.
        const gates = this.o.circuits.of(f.claimed.step);
        if (
          gates.every((g) => g.state === 'closed' || g.probeAvailable) &&
          gates.every((g) => g.state === 'closed' || g.takeProbe())
        ) {
          f.probe = true;
          return 'go';
        }
      }
      await new Promise<void>((resolve) => {
        f.wake = resolve;
        this.waiting.add(f);
      });
    }
  }

  private async fly(f: Flight): Promise<void> {
    for (;;) {
      if ((await this.gate(f)) === 'stop') return this.stopped(f);
      const c = f.claimed;
      const def = this.o.graph[c.step];
      const route = def.route;
      if (!route) return;
      const wasProbe = f.probe;
      f.probe = false;
      f.sends++;
      if (f.sends > 1) this.o.outcomes.count('resends');
      f.sentAt ??= new Date();
      f.inRequest = true;
      const answer = await this.o.client.post({
        baseUrl: this.o.urlOf(c.step),
        route,
        body: JSON.stringify({
          job_id: c.jobId,
          tenant_id: c.tenantId,
          ...(c.jobVariantsId ? { job_variants_id: c.jobVariantsId } : {}),
          attempt: c.attempt,
        }),
        deadlineMs: def.timeoutMs,
        waitMs: def.timeoutMs + DEADLINE_GRACE_MS,
        signal: f.abort.signal,
        trace: f.span ? trace.setSpan(ROOT_CONTEXT, f.span) : undefined,
        attributes: stepAttributes(c),
      });
      f.inRequest = false;
      if (f.abort.signal.aborted) return this.stopped(f);
      let reread: SubjectState | null | undefined;
      if (needsReread(answer)) {
        reread = await this.reread(f);
        if (reread === undefined) return this.stopped(f);
      }
      const action = classifyAnswer(answer, reread, c, this.o.retryAfterCapMs);
      const status = answer.kind === 'http' ? answer.status : null;
      const next = await this.act(f, answer, action, wasProbe);
      if (next === 'end') return;
      if (next !== 'again') {
        // Rescued: the flight goes on with the new attempt (its own run row).
        this.end(f, 'timeout', status, describe(answer));
        f.claimed = next;
        f.sentAt = null;
        f.sends = 0;
        f.started = performance.now();
        f.span = startDispatchSpan(next, this.o.instanceId);
      }
    }
  }

  /** Re-reads the row, waiting for the database if needed. undefined: stopped meanwhile. */
  private async reread(f: Flight): Promise<SubjectState | null | undefined> {
    for (;;) {
      if (this.closing || f.abort.signal.aborted) return undefined;
      try {
        return await readSubject(this.o.pool, f.claimed);
      } catch (err) {
        this.o.durable.noteError(err);
        await sleep(1_000, f.abort.signal);
      }
    }
  }

  private async act(
    f: Flight,
    answer: StageAnswer,
    action: AnswerAction,
    wasProbe: boolean,
  ): Promise<'end' | 'again' | ClaimedStep> {
    const c = f.claimed;
    const gates = this.o.circuits.of(c.step);
    const url = this.o.circuits.url(c.step);
    const status = answer.kind === 'http' ? answer.status : null;
    const base = { ...fields(c), http_status: status ?? undefined, probe: wasProbe || undefined };
    const ms = performance.now() - f.started;
    // Any answer that is not a service failure shows the stage service works (token, route,
    // reachability): it closes a half-open circuit. A recorded 5xx counts towards the URL's
    // "10 in a row" rule instead (below).
    if (action.kind !== 'service-failure')
      for (const g of gates) if (action.kind !== 'retry-rule' || g !== url) g.success();
    switch (action.kind) {
      case 'done':
        this.o.outcomes.succeeded(c, status, ms);
        this.end(f, 'succeeded', status, null);
        return 'end';
      case 'conflict':
      case 'moved':
        this.o.outcomes.count('skips');
        this.o.log.info(
          { ...base, answer: action.kind === 'conflict' ? '409' : describe(answer) },
          'skipped because the state changed meanwhile',
        );
        this.end(f, 'conflict', status, action.kind === 'conflict' ? 'stage answered 409' : 'the row moved on');
        return 'end';
      case 'drop':
        this.o.log.info({ ...base }, 'job not found any more: dispatch dropped');
        this.end(f, 'dropped', status, 'job not found');
        return 'end';
      case 'reject': {
        const error = `stage answered ${status}: ${bodyText(answer)}`;
        this.end(f, 'rejected', status, error);
        await this.o.outcomes.rejected(c, status ?? 0, error);
        return 'end';
      }
      case 'retry-rule': {
        const error = `stage answered ${describe(answer)}`;
        url.recordedFailure(subjectKey(c));
        this.end(f, 'failed', status, error);
        await this.o.outcomes.failed(c, status, error);
        return 'end';
      }
      case 'busy':
        this.o.outcomes.count('busyWaits');
        this.o.log.debug({ ...base, wait_ms: action.waitMs }, 'stage busy: same attempt after Retry-After');
        f.span?.addEvent('stage busy', { 'pipeline.wait_ms': action.waitMs });
        await sleep(action.waitMs, f.abort.signal);
        return 'again';
      case 'stage-owns':
        this.o.log.info(
          { ...base, answer: describe(answer) },
          'the stage is running this attempt; its answer was lost',
        );
        this.end(f, 'error', status, `answer lost (${describe(answer)}); the stage records the end`);
        return 'end';
      case 'rescue': {
        const next = await this.o.outcomes.rescue(c);
        if (!next) {
          this.end(f, 'timeout', status, describe(answer));
          return 'end';
        }
        return next;
      }
      case 'service-failure': {
        this.o.outcomes.count('serviceFailures');
        f.serviceFailuresInRow++;
        const cause = describe(answer);
        const breaker = action.scope === 'route' ? (this.o.circuits.route(c.step, true) as CircuitBreaker) : url;
        breaker.serviceFailure(cause, status === 503 && answer.kind === 'http' ? answer.retryAfterMs : undefined);
        this.o.log.debug({ ...base, cause, scope: action.scope }, 'stage service failure: same attempt later');
        f.span?.addEvent('stage service failure', { 'pipeline.cause': cause.slice(0, 200) });
        if (this.o.circuits.closedFor(c.step)) {
          // The circuit is still closed: wait a little before the same attempt goes again.
          const exp = Math.min(5_000, 250 * 2 ** Math.min(10, f.serviceFailuresInRow - 1));
          await sleep(Math.round(exp / 2 + (this.o.random() * exp) / 2), f.abort.signal);
        }
        return 'again';
      }
    }
  }

  /** The flight was stopped: by a newer attempt of its step (rescued after its deadline), or by close. */
  private stopped(f: Flight): void {
    if (f.supersededBy !== null) {
      this.end(f, 'timeout', null, `superseded by attempt ${f.supersededBy} (rescued after its deadline)`);
    } else this.end(f, 'aborted', null, 'dispatcher stopped');
  }

  /** Records the attempt's outcome in the run log (one row per attempt). */
  private end(f: Flight, state: RunState, httpStatus: number | null, error: string | null): void {
    if (f.span) endDispatchSpan(f.span, state, httpStatus, error);
    f.span = null;
    if (!f.claimed.runId) return;
    this.o.runLog.add({
      runId: f.claimed.runId,
      state,
      httpStatus,
      durationMs: performance.now() - f.started,
      error,
      sentAt: f.sentAt,
    });
  }
}

function bodyText(a: StageAnswer): string {
  return a.kind === 'http' ? a.body.slice(0, 500) : a.error;
}

function describe(a: StageAnswer): string {
  if (a.kind === 'http') return `${a.status} ${a.body.slice(0, 200)}`.trim();
  return a.error;
}

export function fields(c: ClaimedStep) {
  return { job_id: c.jobId, job_variants_id: c.jobVariantsId ?? undefined, step: c.step, attempt: c.attempt };
}

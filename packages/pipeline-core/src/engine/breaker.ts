/**
 * A circuit breaker per stage base URL, and per (base URL, route) for a route
 * that answers 404 without the job_not_found code (docs/healing.md, "a circuit
 * breaker per stage base URL"). Kept in memory by each instance.
 *
 * - closed -> open: after `serviceFailures` (3) service failures in a row, or
 *   `fiveHundreds` (10) recorded 5xx in a row across at least
 *   `fiveHundredSubjects` (5) subjects.
 * - open -> half-open: after a wait of 0.5 s doubling with every re-opening up
 *   to 5 s, and at least the Retry-After of a 503 that gave one. Half-open lets
 *   exactly one real request through (the probe: our oldest waiting row for
 *   the URL, or one new claim); no /healthz probe, which tests neither the
 *   token nor the route.
 * - half-open -> closed: any answer that is not a service failure.
 *   half-open -> open: a service failure (the wait doubles).
 */
export type CircuitState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  serviceFailures?: number;
  fiveHundreds?: number;
  fiveHundredSubjects?: number;
  probeBaseMs?: number;
  probeMaxMs?: number;
}

export interface BreakerEvents {
  /** The circuit opened (once per opening, not on every failed probe). */
  onOpen(b: CircuitBreaker, cause: string): void;
  /** A probe may go now. */
  onHalfOpen(b: CircuitBreaker): void;
  /** Closed again after being open. */
  onClose(b: CircuitBreaker, openMs: number): void;
  /** A probe failed (logged at debug). */
  onProbeFailed(b: CircuitBreaker, cause: string, nextProbeMs: number): void;
}

export class CircuitBreaker {
  state: CircuitState = 'closed';
  private failuresInRow = 0;
  private fiveHundredsInRow = 0;
  private readonly fiveHundredSubjects = new Set<string>();
  /** Consecutive openings without a success in between (the probe wait doubles with each). */
  private reopenings = 0;
  private timer: NodeJS.Timeout | null = null;
  private probeTaken = false;
  openedAt: number | null = null;
  lastCause: string | null = null;
  /** Times this circuit opened. */
  opens = 0;

  constructor(
    readonly key: string,
    private readonly events: BreakerEvents,
    private readonly o: Required<BreakerOptions> = {
      serviceFailures: 3,
      fiveHundreds: 10,
      fiveHundredSubjects: 5,
      probeBaseMs: 500,
      probeMaxMs: 5_000,
    },
  ) {}

  /** Whether a call that is not a probe may go now. */
  get allowsCalls(): boolean {
    return this.state === 'closed';
  }

  /** In half-open: takes the single probe token. True for exactly one caller per half-open period. */
  takeProbe(): boolean {
    if (this.state !== 'half-open' || this.probeTaken) return false;
    this.probeTaken = true;
    return true;
  }

  /** A half-open circuit whose probe has not been taken. */
  get probeAvailable(): boolean {
    return this.state === 'half-open' && !this.probeTaken;
  }

  /** A service failure (the stage service is unavailable). `retryAfterMs`: a 503's Retry-After. */
  serviceFailure(cause: string, retryAfterMs?: number): void {
    this.fiveHundredsInRow = 0;
    this.fiveHundredSubjects.clear();
    if (this.state === 'half-open') {
      this.reopen(cause, retryAfterMs, true);
      return;
    }
    if (this.state === 'open') return; // a call that was already in flight when it opened
    this.failuresInRow++;
    if (this.failuresInRow >= this.o.serviceFailures) {
      this.reopen(`${this.failuresInRow} service failures in a row, last: ${cause}`, retryAfterMs, false);
    }
  }

  /** A 5xx after which the stage recorded the failure (it counts as an attempt). */
  recordedFailure(subject: string): void {
    if (this.state === 'open') return;
    this.failuresInRow = 0;
    if (this.state === 'half-open') {
      this.close();
      return;
    }
    this.fiveHundredsInRow++;
    this.fiveHundredSubjects.add(subject);
    if (this.fiveHundredsInRow >= this.o.fiveHundreds && this.fiveHundredSubjects.size >= this.o.fiveHundredSubjects) {
      this.reopen(
        `${this.fiveHundredsInRow} recorded 5xx in a row across ${this.fiveHundredSubjects.size} subjects`,
        undefined,
        false,
      );
    }
  }

  /**
   * Any answer that is not a service failure. It closes a half-open circuit
   * (the probe's answer). While the circuit is open, answers of calls sent
   * before it opened change nothing: only the probe decides.
   */
  success(): void {
    if (this.state === 'open') return;
    this.failuresInRow = 0;
    this.fiveHundredsInRow = 0;
    this.fiveHundredSubjects.clear();
    if (this.state === 'half-open') this.close();
  }

  /** The probe could not be sent after all (the row moved on): let another caller probe. */
  returnProbe(): void {
    if (this.state === 'half-open' && this.probeTaken) {
      this.probeTaken = false;
      this.events.onHalfOpen(this);
    }
  }

  private reopen(cause: string, retryAfterMs: number | undefined, probeFailed: boolean): void {
    const wait = Math.max(
      retryAfterMs ?? 0,
      Math.min(this.o.probeMaxMs, this.o.probeBaseMs * 2 ** Math.min(20, this.reopenings)),
    );
    this.reopenings++;
    const wasClosed = this.state === 'closed';
    this.state = 'open';
    this.probeTaken = false;
    this.lastCause = cause;
    if (wasClosed) {
      this.openedAt = Date.now();
      this.opens++;
      this.events.onOpen(this, cause);
    } else if (probeFailed) this.events.onProbeFailed(this, cause, wait);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.state !== 'open') return;
      this.state = 'half-open';
      this.probeTaken = false;
      this.events.onHalfOpen(this);
    }, wait);
    this.timer.unref?.();
  }

  private close(): void {
    const openMs = this.openedAt === null ? 0 : Date.now() - this.openedAt;
    this.state = 'closed';
    this.reopenings = 0;
    this.failuresInRow = 0;
    this.probeTaken = false;
    this.openedAt = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.events.onClose(this, openMs);
  }

  /** Stops the probe timer (engine close). */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** 0 closed, 1 half-open, 2 open (the pipeline_stage_circuit_state gauge). */
  get gauge(): 0 | 1 | 2 {
    return this.state === 'closed' ? 0 : this.state === 'half-open' ? 1 : 2;
  }
}

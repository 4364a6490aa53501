/**
 * The engine's circuit breakers: one per stage base URL, and one per
 * (base URL, route) for routes answering 404 without the job_not_found code
 * (docs/healing.md). Logs: one warn line when a circuit opens (with the
 * cause), one info line when it closes (with the count swept, logged by the
 * engine's sweep), probe failures at debug.
 */
import type { EngineLogger } from '../logger.js';
import type { Step, StepDefinition } from '../steps.js';
import { type BreakerOptions, CircuitBreaker } from './breaker.js';

export interface CircuitEvents {
  halfOpen(b: CircuitBreaker): void;
  closed(b: CircuitBreaker, openMs: number): void;
}

export interface CircuitSnapshot {
  baseUrl: string;
  route: string | null;
  state: 'closed' | 'open' | 'half-open';
  /** 0 closed, 1 half-open, 2 open. */
  gauge: 0 | 1 | 2;
  opens: number;
  openedAt: Date | null;
  lastCause: string | null;
}

export class Circuits {
  private readonly byUrl = new Map<string, CircuitBreaker>();
  private readonly byRoute = new Map<string, CircuitBreaker>();
  private readonly meta = new Map<CircuitBreaker, { baseUrl: string; route: string | null }>();

  constructor(
    private readonly urlOf: (step: Step) => string,
    private readonly graph: Readonly<Record<Step, StepDefinition>>,
    private readonly log: EngineLogger,
    private readonly events: CircuitEvents,
    private readonly options?: Required<BreakerOptions>,
  ) {}

  private make(key: string, baseUrl: string, route: string | null): CircuitBreaker {
    const b = new CircuitBreaker(
      key,
      {
        onOpen: (_b, cause) =>
          this.log.warn(
            { base_url: baseUrl, route: route ?? undefined, cause },
            route
              ? 'stage route circuit opened: its steps are not claimed until a probe succeeds'
              : 'stage circuit opened: its steps are not claimed until a probe succeeds',
          ),
        onHalfOpen: (br) => this.events.halfOpen(br),
        onClose: (br, openMs) => this.events.closed(br, openMs),
        onProbeFailed: (_b, cause, nextMs) =>
          this.log.debug(
            { base_url: baseUrl, route: route ?? undefined, cause, next_probe_ms: nextMs },
            'stage circuit probe failed',
          ),
      },
      this.options,
    );
    this.meta.set(b, { baseUrl, route });
    return b;
  }

  /** The URL breaker of a step's stage. */
  url(step: Step): CircuitBreaker {
    const baseUrl = this.urlOf(step);
    let b = this.byUrl.get(baseUrl);
    if (!b) {
      b = this.make(baseUrl, baseUrl, null);
      this.byUrl.set(baseUrl, b);
    }
    return b;
  }

  /** The route breaker of a step (created on the first route 404). */
  route(step: Step, create = false): CircuitBreaker | undefined {
    const route = this.graph[step].route;
    if (!route) return undefined;
    const baseUrl = this.urlOf(step);
    const key = `${baseUrl} ${route}`;
    let b = this.byRoute.get(key);
    if (!b && create) {
      b = this.make(key, baseUrl, route);
      this.byRoute.set(key, b);
    }
    return b;
  }

  /** Every breaker gating calls of `step`. */
  of(step: Step): CircuitBreaker[] {
    const out = [this.url(step)];
    const r = this.route(step);
    if (r) out.push(r);
    return out;
  }

  /** Whether every breaker of `step` lets ordinary calls through. */
  closedFor(step: Step): boolean {
    return this.of(step).every((b) => b.state === 'closed');
  }

  /** The combined state of a step's breakers: open beats half-open beats closed. */
  stateFor(step: Step): 'closed' | 'open' | 'half-open' {
    let s: 'closed' | 'open' | 'half-open' = 'closed';
    for (const b of this.of(step)) {
      if (b.state === 'open') return 'open';
      if (b.state === 'half-open') s = 'half-open';
    }
    return s;
  }

  /** Steps whose breakers include `b`. */
  stepsOf(b: CircuitBreaker, steps: readonly Step[]): Step[] {
    return steps.filter((s) => this.of(s).includes(b));
  }

  info(b: CircuitBreaker): { baseUrl: string; route: string | null } {
    return this.meta.get(b) ?? { baseUrl: b.key, route: null };
  }

  snapshot(): CircuitSnapshot[] {
    return [...this.byUrl.values(), ...this.byRoute.values()].map((b) => {
      const m = this.info(b);
      return {
        baseUrl: m.baseUrl,
        route: m.route,
        state: b.state,
        gauge: b.gauge,
        opens: b.opens,
        openedAt: b.openedAt === null ? null : new Date(b.openedAt),
        lastCause: b.lastCause,
      };
    });
  }

  all(): CircuitBreaker[] {
    return [...this.byUrl.values(), ...this.byRoute.values()];
  }

  dispose(): void {
    for (const b of this.all()) b.dispose();
  }
}

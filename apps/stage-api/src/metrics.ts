/**
 * Prometheus metrics (prom-client): one registry per app instance, so tests
 * and several apps in one process never share counters. A hosted listener
 * plugin registers the engine's series in the same registry (docs/metrics.md).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ListenerStatusSource {
  status(): unknown;
}

export interface StageMetrics {
  registry: Registry;
  stageDuration: Histogram<'step' | 'outcome'>;
  stageOutcomes: Counter<'step' | 'outcome'>;
  saturated: Counter<'step' | 'resource'>;
  modelCalls: Counter<'backend' | 'outcome'>;
  /** Starts/stops the event-loop delay histogram used by the gauge. */
  close(): void;
}

export function createMetrics(): StageMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'stage_api_' });
  const stageDuration = new Histogram({
    name: 'stage_duration_seconds',
    help: 'Duration of one stage run (one variant or one job), by step and outcome',
    labelNames: ['step', 'outcome'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
    registers: [registry],
  });
  const stageOutcomes = new Counter({
    name: 'stage_runs_total',
    help: 'Stage runs by step and outcome (done, failed, superseded, conflict, gone, unavailable)',
    labelNames: ['step', 'outcome'] as const,
    registers: [registry],
  });
  const saturated = new Counter({
    name: 'stage_saturated_total',
    help: 'Stage calls refused with 429 because a model/resource was at its concurrency limit',
    labelNames: ['step', 'resource'] as const,
    registers: [registry],
  });
  const modelCalls = new Counter({
    name: 'stage_model_calls_total',
    help: 'Calls to a model backend (vlm, llm, yolo) or its CPU fallback, by outcome',
    labelNames: ['backend', 'outcome'] as const,
    registers: [registry],
  });
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  new Gauge({
    name: 'stage_event_loop_delay_p99_seconds',
    help: 'p99 event-loop delay since the previous scrape',
    registers: [registry],
    collect() {
      this.set(eld.percentile(99) / 1e9);
      eld.reset();
    },
  });
  return {
    registry,
    stageDuration,
    stageOutcomes,
    saturated,
    modelCalls,
    close: () => eld.disable(),
  };
}

/**
 * Prometheus metrics (prom-client): one registry per app instance, so tests
 * and several apps in one process never share counters. A hosted listener
 * plugin registers the engine's series in the same registry (docs/metrics.md).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RESOURCES, type Resource } from './config.js';
import { type AdmissionObserver, REFUSAL_REASONS, type ResourceSnapshot } from './stages/limiter.js';

export interface ListenerStatusSource {
  status(): unknown;
}

export interface StageMetrics {
  registry: Registry;
  stageDuration: Histogram<'step' | 'outcome'>;
  stageOutcomes: Counter<'step' | 'outcome'>;
  saturated: Counter<'step' | 'resource'>;
  modelCalls: Counter<'backend' | 'outcome'>;
  /** Admission waits and refusals (docs/stage-api.md, "Admission"). */
  admission: AdmissionObserver;
  /** Where the queue gauges read from when scraped (the app's AdmissionQueues). */
  watchAdmission(source: () => Record<Resource, ResourceSnapshot>): void;
  /** Starts/stops the event-loop delay histogram used by the gauge. */
  close(): void;
}

export function createMetrics(): StageMetrics {
  const registry = new Registry();
  // The default process series keep their standard names (process_*, nodejs_*): no prefix (docs/metrics.md).
  collectDefaultMetrics({ register: registry });
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
  const admissionWait = new Histogram({
    name: 'stage_admission_wait_seconds',
    help: 'Time a stage call waited in the admission queue of a resource before holding a slot of it',
    labelNames: ['resource'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  });
  const admissionRefused = new Counter({
    name: 'stage_admission_refused_total',
    help: 'Stage calls answered 429 by admission, by resource and reason (queue_full, deadline, max_wait)',
    labelNames: ['resource', 'reason'] as const,
    registers: [registry],
  });
  let admissionSource: (() => Record<Resource, ResourceSnapshot>) | null = null;
  new Gauge({
    name: 'stage_admission_queue_length',
    help: 'Stage calls waiting in the admission queue of a resource',
    labelNames: ['resource'] as const,
    registers: [registry],
    collect() {
      const s = admissionSource?.();
      for (const r of RESOURCES) this.set({ resource: r }, s?.[r].queued ?? 0);
    },
  });
  new Gauge({
    name: 'stage_admission_in_use',
    help: 'Slots of a resource held by stage calls now',
    labelNames: ['resource'] as const,
    registers: [registry],
    collect() {
      const s = admissionSource?.();
      for (const r of RESOURCES) this.set({ resource: r }, s?.[r].inUse ?? 0);
    },
  });
  // Every series of every resource exists from the start (a dashboard sees 0, not nothing).
  for (const r of RESOURCES) {
    admissionWait.zero({ resource: r });
    for (const reason of REFUSAL_REASONS) admissionRefused.inc({ resource: r, reason }, 0);
  }
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
    admission: {
      waited: (resource, seconds) => admissionWait.observe({ resource }, seconds),
      refused: (resource, reason) => admissionRefused.inc({ resource, reason }),
    },
    watchAdmission: (source) => {
      admissionSource = source;
    },
    close: () => eld.disable(),
  };
}

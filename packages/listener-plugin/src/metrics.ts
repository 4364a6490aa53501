/**
 * The engine's metrics in the host's own prom-client Registry (the
 * `metricsRegistry` option; prom-client is an optional peer dependency).
 * Counters and gauges are read from the engine's status() when the registry
 * is scraped, so the hot path pays nothing; the job-duration histogram is fed
 * by the engine's 'job:finished' event, which only the instance that made or
 * received a job's final transition emits. Names and meanings: docs/metrics.md.
 */
import type { EngineEvents, EngineStatus } from '@feedlyai/pipeline-core';
import type { Registry } from 'prom-client';

/** The subset of prom-client this module uses (the host's copy is loaded at registration). */
type PromClient = typeof import('prom-client');

interface Source {
  status(): Partial<EngineStatus> & { connected: boolean };
  on(event: 'job:finished', listener: (...args: EngineEvents['job:finished']) => void): unknown;
}

/** Buckets of pipeline_job_duration_seconds: a job takes seconds on CPU fallbacks, minutes with models or retries. */
export const JOB_DURATION_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];

const COUNTERS: Array<[name: string, help: string, field: keyof EngineStatus]> = [
  ['pipeline_notifications_total', 'State-change notifications received', 'events'],
  ['pipeline_notifications_invalid_total', 'Malformed notifications skipped', 'invalid'],
  [
    'pipeline_notifications_overflow_total',
    'Notifications left to the sweep because the wait queue was full',
    'notificationOverflow',
  ],
  [
    'pipeline_dispatches_total',
    'Attempts claimed and handed to a flight (claims, retries, rescues, re-dispatches)',
    'dispatches',
  ],
  ['pipeline_skips_total', 'Claims lost to another instance, 409 answers, rows that moved on meanwhile', 'skips'],
  ['pipeline_step_failures_total', 'Failures that count as an attempt: recorded 5xx, 400/422, time-outs', 'failures'],
  ['pipeline_retries_total', 'Retries claimed after a failure the stage recorded', 'retries'],
  ['pipeline_give_ups_total', 'Steps given up (attempt limit, or bad input)', 'giveUps'],
  ['pipeline_rescues_total', 'Running steps past their deadline rescued as a new attempt', 'rescues'],
  ['pipeline_redispatches_total', 'Queued steps of dead (or missing) claimers taken over', 'redispatches'],
  [
    'pipeline_own_resends_total',
    'Own queued steps found by a sweep without a call in flight, sent again',
    'resendsOwn',
  ],
  ['pipeline_resends_total', 'Requests that re-sent an attempt already sent (service failure or 429)', 'resends'],
  [
    'pipeline_service_failures_total',
    'Stage answers meaning the stage service was unavailable (no attempt used)',
    'serviceFailures',
  ],
  ['pipeline_busy_waits_total', '429 answers waited out', 'busyWaits'],
  ['pipeline_circuit_opens_total', 'Times a stage circuit opened', 'circuitOpens'],
  ['pipeline_recoveries_total', 'Transitions claimed by recovery sweeps', 'recoveries'],
  ['pipeline_recovery_sweeps_total', 'Recovery sweeps run', 'recoveryRuns'],
  [
    'pipeline_outcomes_dropped_total',
    'Outcomes that could not be written and were dropped (should stay 0)',
    'outcomesDropped',
  ],
];

const GAUGES: Array<[name: string, help: string, read: (s: ReturnType<Source['status']>) => number]> = [
  [
    'pipeline_in_flight',
    'Slots in use: stage calls in flight, busy waits and waits for a circuit included',
    (s) => s.inFlight ?? 0,
  ],
  [
    'pipeline_waiting_for_slot',
    'Work waiting for a slot (notifications, retries, sweeps)',
    (s) => s.waitingForSlot ?? 0,
  ],
  ['pipeline_outcomes_kept', 'Outcomes waiting for the database to come back', (s) => s.outcomesKept ?? 0],
  ['pipeline_listener_connected', '1 when the LISTEN connection is up', (s) => (s.connected ? 1 : 0)],
  [
    'pipeline_paused',
    '1 while this instance sends nothing (its LISTEN connection has been away too long)',
    (s) => (s.paused ? 1 : 0),
  ],
  ['pipeline_peers', 'Live listener instances this one knows of', (s) => s.peers ?? 1],
];

/**
 * Registers the engine's series in `registry`: once per registry (one
 * listener per registry; a second one is refused with a clear error).
 */
export function registerMetrics(prom: PromClient, registry: Registry, source: Source): void {
  if (registry.getSingleMetric('pipeline_dispatches_total')) {
    throw new Error(
      '@feedlyai/listener-plugin: metricsRegistry already holds the pipeline_* series of another listener: give each listener its own Registry (docs/metrics.md)',
    );
  }
  for (const [name, help, field] of COUNTERS) {
    let last = 0;
    new prom.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const v = Number(source.status()[field] ?? 0);
        if (v > last) this.inc(v - last);
        last = Math.max(last, v);
      },
    });
  }
  for (const [name, help, read] of GAUGES) {
    new prom.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(source.status()));
      },
    });
  }
  const jobDuration = new prom.Histogram({
    name: 'pipeline_job_duration_seconds',
    help: 'Jobs from their creation to their final done or failed, observed by the instance that made or received the final transition',
    labelNames: ['status'] as const,
    buckets: JOB_DURATION_BUCKETS,
    registers: [registry],
  });
  // Both series exist from the start: a dashboard sees 0, not nothing.
  jobDuration.zero({ status: 'done' });
  jobDuration.zero({ status: 'failed' });
  source.on('job:finished', (e) => jobDuration.observe({ status: e.status }, e.durationSeconds));
  new prom.Gauge({
    name: 'pipeline_stage_circuit_state',
    help: 'Circuit of a stage base URL (route empty) or of one route: 0 closed, 1 half-open, 2 open',
    labelNames: ['base_url', 'route'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const c of source.status().circuits ?? []) this.set({ base_url: c.baseUrl, route: c.route ?? '' }, c.gauge);
    },
  });
}

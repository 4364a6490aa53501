/**
 * Scenarios `outage` and `rotation` (docs/chaos.md): jobs in flight, then the
 * stage service becomes unavailable for a while and comes back. Neither is
 * about a job: no job may fail, no attempt may be used for it, and every job
 * must be done soon after the service is back.
 *
 * - outage: the stage double closes its listening socket (new connections
 *   refused, requests inside finish normally, keep-alive connections reset)
 *   and listens again on the same port after `durationMs`;
 * - rotation: for `durationMs` every stage request is answered 401 (the
 *   stage's token was rotated before the listeners got the new one).
 */
import { performance } from 'node:perf_hooks';
import { waitFor } from '@feedlyai/test-tools/db';
import { bulkSeed } from '../seed.js';
import { round } from '../stats.js';
import { chaosEnv, jobProgress, waitForJobs, waitForQuiet } from './env.js';
import { type CommonChaosOptions, timeline } from './faults.js';
import { buildResult, type ChaosResult } from './result.js';

export interface InterruptionOptions extends CommonChaosOptions {
  jobs: number;
  variants: number;
  instances: number;
  latencyMs: readonly [number, number];
  /** How long the stage is down (outage) or answers 401 (rotation). */
  durationMs: number;
  /** The interruption starts once the double has answered this many 2xx (the jobs are in flight). */
  startAfterOk: number;
  /** The headline's target, printed (not asserted): service back to last job done. */
  targetMs: number;
}

export async function runInterruption(kind: 'outage' | 'rotation', o: InterruptionOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const env = await chaosEnv({
    scenario: kind,
    instances: o.instances,
    double: { latencyMs: o.latencyMs, failureRate: 0, ...(o.random ? { random: o.random } : {}), poolMax: 20 },
    log,
    ...(o.listenerLogLevel ? { listenerLogLevel: o.listenerLogLevel } : {}),
  });
  try {
    await bulkSeed(env.admin, {
      jobs: o.jobs,
      variantsPerJob: o.variants,
      variantStep: 'img_gen',
      variantStatus: 'queued',
    });
    const t0 = performance.now();
    const startEpochMs = Date.now();
    const { events, event, note } = timeline(t0, log);
    await env.admin.query(
      `UPDATE jobs_variants SET status = 'done' WHERE current_step = 'img_gen' AND status = 'queued'`,
    );
    event(`${o.jobs * o.variants} variants made (img_gen,'done')`);
    await waitFor(() => env.double.kindTotals().ok >= o.startAfterOk, {
      timeoutMs: 120_000,
      intervalMs: 10,
      message: `${o.startAfterOk} steps done before the ${kind}`,
    });
    const before = await jobProgress(env.admin, null);
    const inFlight = env.double.inFlight();
    const okBefore = env.double.kindTotals().ok;
    let backAt: number;
    if (kind === 'outage') {
      event(`stage double down for ${o.durationMs / 1000} s (${inFlight} requests inside, ${okBefore} steps done)`);
      const { upAt } = await env.double.down(o.durationMs);
      backAt = upAt;
      event('stage double listening again on the same port');
    } else {
      event(`stage double answers 401 for ${o.durationMs / 1000} s (${okBefore} steps done)`);
      const { until } = await env.double.rejectAuth(o.durationMs);
      backAt = until;
      event('stage double accepts requests again');
    }
    const during = env.double.kindTotals();
    const progress = await waitForJobs(env, null, backAt + o.settleMs, note);
    event(`${progress.done}/${progress.total} jobs done, ${progress.failed} failed`);
    await waitForQuiet(env);
    const instanceStats = await env.stopInstances();
    const result = await buildResult(env, {
      scenario: kind,
      jobIds: null,
      variants: o.variants,
      instances: o.instances,
      progress,
      measure: kind === 'outage' ? 'stage back to last job done' : '401s over to last job done',
      fromEpochMs: backAt,
      startEpochMs,
      targetMs: o.targetMs,
      events,
      details: {
        durationMs: o.durationMs,
        jobsDoneBefore: before.done,
        stepsDoneBefore: okBefore,
        requestsInsideAtStart: inFlight,
        ...(kind === 'outage' ? { keepAliveResets: env.double.resets() } : { answered401: during.unauthorized }),
      },
    });
    return { ...result, instanceStats, totalSeconds: round((performance.now() - t0) / 1000, 1) };
  } finally {
    await env.close();
  }
}

/**
 * Scenario `backlog` (docs/chaos.md): recovery alone must move work, on a
 * database with a large parked backlog it must not touch.
 *
 * - `parked` variants (default 10,000; 4 per job) parked upstream of the
 *   pipeline: half at (user_img_input, any status), half at (img_gen,'queued'),
 *   with updated_at between 5 min and 23 h old (inside the 24 h recovery
 *   window), inserted with that value (the touch trigger only stamps
 *   updated_at on UPDATEs of the state columns);
 * - `jobs` jobs x `variants` variants at (img_gen,'queued');
 * - the listener instances start (their startup sweep walks the backlog);
 * - every listener connection is killed, and while none exists (the default
 *   reconnect delay is 5 s) the jobs' variants are made (img_gen,'done') in one
 *   statement, guarded on no listener connection existing: their
 *   notifications reach nobody, so only recovery (the reconnect sweep, or the
 *   periodic one) can move them.
 *
 * Verdict: every job done within one recovery interval (60 s) + 15 s of that
 * statement (printed), exactly once and at attempt 1 per step, and the backlog
 * untouched (same states, no stage request for it).
 */
import { performance } from 'node:perf_hooks';
import { LISTENER_APPLICATION_NAME } from '@feedlyai/pipeline-core';
import { waitFor } from '@feedlyai/test-tools/db';
import { bulkSeed } from '../seed.js';
import { round } from '../stats.js';
import { chaosEnv, killListenerConnections, listenerConnections, waitForJobs, waitForQuiet } from './env.js';
import { type CommonChaosOptions, timeline } from './faults.js';
import { buildResult, type ChaosResult } from './result.js';

export interface BacklogOptions extends CommonChaosOptions {
  /** Parked variants (4 per job). */
  parked: number;
  jobs: number;
  variants: number;
  instances: number;
  /** The headline's target, printed (not asserted): done UPDATE to last job done. */
  targetMs: number;
}

const PARKED_TENANT = 'chaos_backlog_parked';

/** Inserts the parked backlog in one statement; updated_at 5 min to 23 h old. */
async function seedParked(env: Awaited<ReturnType<typeof chaosEnv>>, variants: number): Promise<void> {
  await env.admin.query(
    `WITH j AS (
       INSERT INTO jobs (tenant_id, current_step, status, updated_at)
       SELECT $1,
              CASE WHEN g % 2 = 0 THEN 'user_img_input' ELSE 'img_gen' END,
              CASE WHEN g % 2 = 0 THEN (ARRAY['queued', 'running', 'done', 'failed'])[1 + (g / 2) % 4] ELSE 'queued' END,
              now() - make_interval(secs => 300 + random() * (82800 - 300))
         FROM generate_series(1, $2::int) g
       RETURNING job_id, current_step, status, updated_at)
     INSERT INTO jobs_variants (job_id, creation_order, current_step, status, updated_at)
     SELECT j.job_id, k, j.current_step, j.status, j.updated_at FROM j CROSS JOIN generate_series(1, 4) k`,
    [PARKED_TENANT, Math.ceil(variants / 4)],
  );
}

async function parkedStates(env: Awaited<ReturnType<typeof chaosEnv>>): Promise<Record<string, number>> {
  const r = await env.admin.query<{ k: string; n: number }>(
    `SELECT v.current_step || '/' || v.status AS k, count(*)::int AS n
       FROM jobs_variants v JOIN jobs j USING (job_id)
      WHERE j.tenant_id = $1 GROUP BY 1 ORDER BY 1`,
    [PARKED_TENANT],
  );
  return Object.fromEntries(r.rows.map((x) => [x.k, x.n]));
}

export async function runBacklog(o: BacklogOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const env = await chaosEnv({
    scenario: 'backlog',
    instances: 0,
    double: { latencyMs: [0, 20], failureRate: 0, ...(o.random ? { random: o.random } : {}), poolMax: 20 },
    log,
    ...(o.listenerLogLevel ? { listenerLogLevel: o.listenerLogLevel } : {}),
  });
  try {
    const t0 = performance.now();
    const startEpochMs = Date.now();
    const { events, event, note } = timeline(t0, log);
    await seedParked(env, o.parked);
    await bulkSeed(env.admin, {
      jobs: o.jobs,
      variantsPerJob: o.variants,
      variantStep: 'img_gen',
      variantStatus: 'queued',
      tenantId: 'chaos_backlog_jobs',
    });
    await env.admin.query('ANALYZE jobs, jobs_variants');
    const { rows: jobRows } = await env.admin.query<{ j: string }>(
      `SELECT job_id::text AS j FROM jobs WHERE tenant_id = 'chaos_backlog_jobs'`,
    );
    const jobIds = jobRows.map((r) => r.j);
    const parkedBefore = await parkedStates(env);
    event(`seeded ${o.parked} parked variants and ${o.jobs} x ${o.variants} at (img_gen,'queued')`);
    const started = await Promise.all(
      Array.from({ length: o.instances }, (_, i) => env.startInstance(`chaos-backlog-${i + 1}`)),
    );
    env.instances.push(...started);
    event(`${o.instances} instances ready`);

    // Kill every listener connection; while none exists, make the jobs' variants done in one
    // statement that checks, in the same snapshot, that no listener connection exists.
    let updatedAt = 0;
    let killed = 0;
    for (let tries = 0; tries < 3 && updatedAt === 0; tries++) {
      killed += await killListenerConnections(env.admin);
      await waitFor(async () => (await listenerConnections(env.admin)) === 0, {
        timeoutMs: 4_000,
        intervalMs: 20,
        message: 'every listener connection gone',
      });
      const r = await env.admin.query<{ n: number; t: number }>(
        `WITH u AS (
           UPDATE jobs_variants SET status = 'done'
            WHERE job_id = ANY($1::uuid[]) AND current_step = 'img_gen' AND status = 'queued'
              AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $2)
           RETURNING 1)
         SELECT count(*)::int AS n, extract(epoch FROM now()) * 1000 AS t FROM u`,
        [jobIds, LISTENER_APPLICATION_NAME],
      );
      if ((r.rows[0]?.n ?? 0) > 0) updatedAt = Number(r.rows[0]?.t);
    }
    if (updatedAt === 0) throw new Error('backlog: a listener was connected at every try of the done UPDATE');
    event(`killed ${killed} listener connections; ${o.jobs * o.variants} variants made (img_gen,'done') meanwhile`);
    const reconnect = await waitFor(
      async () => {
        const r = await env.admin.query<{ n: number; first: number }>(
          `SELECT count(*)::int AS n, extract(epoch FROM min(backend_start)) * 1000 AS first
             FROM pg_stat_activity WHERE application_name = $1`,
          [LISTENER_APPLICATION_NAME],
        );
        const row = r.rows[0];
        return row && row.n >= o.instances ? Number(row.first) : null;
      },
      { timeoutMs: 120_000, intervalMs: 100, message: 'the listeners reconnected' },
    ).catch(() => null);
    if (reconnect !== null) event(`listeners reconnected ${Math.round(reconnect - updatedAt)} ms after the UPDATE`);

    const progress = await waitForJobs(env, jobIds, updatedAt + o.settleMs, note);
    event(`${progress.done}/${progress.total} jobs done, ${progress.failed} failed`);
    await waitForQuiet(env);
    const instanceStats = await env.stopInstances();
    const parkedAfter = await parkedStates(env);
    const { rows: parkedIds } = await env.admin.query<{ id: string }>(
      `SELECT v.job_variants_id::text AS id FROM jobs_variants v JOIN jobs j USING (job_id) WHERE j.tenant_id = $1
       UNION ALL SELECT job_id::text FROM jobs WHERE tenant_id = $1`,
      [PARKED_TENANT],
    );
    const parkedSet = new Set(parkedIds.map((r) => r.id));
    let parkedRequests = 0;
    for (const [key, c] of env.double.pairCounts()) {
      if (parkedSet.has(key.slice(0, key.indexOf('|')))) parkedRequests += Object.values(c).reduce((a, b) => a + b, 0);
    }
    const result = await buildResult(env, {
      scenario: 'backlog',
      jobIds,
      variants: o.variants,
      instances: o.instances,
      progress,
      measure: 'done UPDATE (listeners away) to last job done',
      fromEpochMs: updatedAt,
      startEpochMs,
      targetMs: o.targetMs,
      events,
      details: {
        parkedVariants: o.parked,
        parkedUnchanged: JSON.stringify(parkedBefore) === JSON.stringify(parkedAfter),
        parkedBefore,
        parkedAfter,
        parkedRequests,
        listenerConnectionsKilled: killed,
        reconnectedAfterMs: reconnect === null ? null : Math.round(reconnect - updatedAt),
      },
    });
    return { ...result, instanceStats, totalSeconds: round((performance.now() - t0) / 1000, 1) };
  } finally {
    await env.close();
  }
}

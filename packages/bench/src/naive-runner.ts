/**
 * A naive dispatcher, the baseline our engine must beat (docs/benchmarks.md):
 * what a team would write in an afternoon on the same schema and triggers.
 * One LISTEN connection; per notification of a `done`, ONE guarded claim
 * `UPDATE ... RETURNING`, then ONE POST to the stage; a recovery sweep every
 * 5 s. No run log, no ownership across instances, no batching, no circuit
 * breaker, no retries. Every instance claims every notification; the guard
 * makes one win. Forked by chain.ts, one process per instance.
 */
import {
  FAN_IN_FROM,
  FAN_IN_TO,
  isJobLevel,
  JOB_CHANNEL,
  nextStep,
  parseJobNotification,
  parseVariantNotification,
  routeOf,
  type Step,
  VARIANT_CHANNEL,
} from '@feedlyai/pipeline-core';
import pg from 'pg';
import { Pool as HttpPool } from 'undici';
import { childConfig, serveChild } from './child.js';

export interface NaiveRunnerConfig {
  connectionString: string;
  stageUrl: string;
  poolMax?: number;
}

interface Claimed {
  job_id: string;
  tenant_id: string;
  job_variants_id: string | null;
  step: Step;
}

const CLAIM_VARIANT = `UPDATE jobs_variants v SET current_step = $2, status = 'queued', attempt = 1
   FROM jobs j
  WHERE v.job_variants_id = $1 AND j.job_id = v.job_id AND v.current_step = $3 AND v.status = 'done'
    AND j.failure_reason IS NULL
  RETURNING v.job_id::text, j.tenant_id, v.job_variants_id::text`;

const CLAIM_FAN_IN = `UPDATE jobs j SET current_step = '${FAN_IN_TO}', status = 'queued', attempt = 1
  WHERE j.job_id = $1 AND j.failure_reason IS NULL AND j.current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen')
    AND NOT EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id
                     AND NOT (v.current_step = '${FAN_IN_FROM}' AND v.status = 'done'))
  RETURNING j.job_id::text, j.tenant_id, NULL AS job_variants_id`;

const CLAIM_JOB_NEXT = `UPDATE jobs j SET current_step = $2, status = 'queued', attempt = 1
  WHERE j.job_id = $1 AND j.current_step = $3 AND j.status = 'done' AND j.failure_reason IS NULL
  RETURNING j.job_id::text, j.tenant_id, NULL AS job_variants_id`;

serveChild(async () => {
  const cfg = childConfig<NaiveRunnerConfig>();
  const pool = new pg.Pool({ connectionString: cfg.connectionString, max: cfg.poolMax ?? 10 });
  pool.on('error', () => {});
  const url = new URL(cfg.stageUrl);
  const http = new HttpPool(url.origin, { connections: 64 });
  const stats = { claims: 0, lost: 0, posts: 0, sweeps: 0 };
  const inFlight = new Set<Promise<unknown>>();

  const post = (c: Claimed): void => {
    stats.posts++;
    const p = http
      .request({
        path: routeOf(c.step),
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          job_id: c.job_id,
          tenant_id: c.tenant_id,
          ...(c.job_variants_id ? { job_variants_id: c.job_variants_id } : {}),
          attempt: 1,
        }),
      })
      .then((r) => r.body.dump())
      .catch(() => {});
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  const claim = async (sql: string, params: unknown[], step: Step): Promise<void> => {
    stats.claims++;
    const r = await pool.query<Omit<Claimed, 'step'>>(sql, params).catch(() => null);
    const row = r?.rows[0];
    if (!row) {
      stats.lost++;
      return;
    }
    post({ ...row, step });
  };

  /** A `(prev,'done')`: claim what comes next. */
  const onDone = (jobId: string, variantId: string | null, prev: Step): Promise<void> | undefined => {
    if (variantId) {
      if (prev === FAN_IN_FROM) return claim(CLAIM_FAN_IN, [jobId], FAN_IN_TO);
      const next = nextStep(prev);
      if (!next || isJobLevel(next)) return undefined;
      return claim(CLAIM_VARIANT, [variantId, next, prev], next);
    }
    const next = isJobLevel(prev) ? nextStep(prev) : null;
    return next ? claim(CLAIM_JOB_NEXT, [jobId, next, prev], next) : undefined;
  };

  const listen = new pg.Client({ connectionString: cfg.connectionString });
  listen.on('error', () => {});
  listen.on('notification', (n) => {
    if (n.channel === VARIANT_CHANNEL) {
      const p = parseVariantNotification(n.payload);
      if (p.ok && p.value.status === 'done') void onDone(p.value.job_id, p.value.job_variants_id, p.value.current_step);
    } else {
      const p = parseJobNotification(n.payload);
      if (p.ok && p.value.status === 'done') void onDone(p.value.job_id, null, p.value.current_step);
    }
  });
  await listen.connect();
  await listen.query(`LISTEN ${VARIANT_CHANNEL}`);
  await listen.query(`LISTEN ${JOB_CHANNEL}`);

  // The recovery sweep: every `done` that should have moved on.
  const sweep = async () => {
    stats.sweeps++;
    const v = await pool
      .query<{ job_id: string; id: string; step: Step }>(
        `SELECT job_id::text, job_variants_id::text AS id, current_step AS step FROM jobs_variants
          WHERE status = 'done' AND current_step NOT IN ('user_img_input') LIMIT 5000`,
      )
      .catch(() => null);
    for (const r of v?.rows ?? []) await onDone(r.job_id, r.id, r.step);
    const j = await pool
      .query<{ job_id: string; step: Step }>(
        `SELECT job_id::text, current_step AS step FROM jobs WHERE status = 'done' AND current_step = 'ad_copy_gen_kor'`,
      )
      .catch(() => null);
    for (const r of j?.rows ?? []) await onDone(r.job_id, null, r.step);
  };
  const timer = setInterval(() => void sweep(), 5_000);

  return {
    info: { naive: true },
    stop: async () => {
      clearInterval(timer);
      await listen.end().catch(() => {});
      await Promise.allSettled([...inFlight]);
      await http.close();
      await pool.end();
      return { ...stats, dispatches: stats.posts, cpu: process.cpuUsage() };
    },
  };
});

/**
 * The state machine of one stage call, through pipeline-core's guarded
 * transitions only (stageStart / stageFinishDone / stageFinishFailed):
 *
 *   ownership check (404) -> saturation check (429, row untouched)
 *   -> stageStart (409 with the current state when not ready)
 *   -> the stage's work (outside any transaction)
 *   -> one transaction: result rows + stageFinishDone; rolled back when the
 *      attempt was superseded (rescued, cancelled) meanwhile
 *   -> on any failure: stageFinishFailed with the error, answer 500.
 */
import {
  isJobLevel,
  prevStep,
  type Step,
  stageFinishDone,
  stageFinishFailed,
  stageStart,
  withTransaction,
} from '@feedlyai/pipeline-core';
import type { FastifyBaseLogger } from 'fastify';
import type pg from 'pg';
import type { Storage } from '@feedlyai/pipeline-core';
import type { Backends } from '../clients/models.js';
import type { Resource, StageConfig } from '../config.js';
import { getJob, getVariant, listVariants, type VariantRow } from '../db/queries.js';
import type { StageMetrics } from '../metrics.js';
import type { CpuRunner } from '../workers/pool.js';
import type { ResourceLimiter } from './limiter.js';

export interface StageContext {
  config: StageConfig;
  pool: pg.Pool;
  storage: Storage;
  backends: Backends;
  cpu: CpuRunner;
  limiter: ResourceLimiter;
  metrics: StageMetrics;
  log: FastifyBaseLogger;
}

export interface StageRun {
  step: Step;
  jobId: string;
  tenantId: string;
  attempt: number;
  /** Variant-level steps only. */
  variant: VariantRow | null;
}

export interface StageOutput {
  /** Which method produced the result (vlm, heuristic, yolo, saliency, ...). */
  method: string;
  /** Returned to the caller. */
  summary: Record<string, unknown>;
  /** Inserts the result rows; runs in the transaction of stageFinishDone. */
  persist(client: pg.PoolClient): Promise<void>;
}

export interface StageDefinition {
  step: Step;
  /** Resources one call holds (decided before the row is started). */
  resources(ctx: StageContext): Resource[];
  execute(ctx: StageContext, run: StageRun): Promise<StageOutput>;
}

export interface StageRequest {
  job_id: string;
  tenant_id: string;
  job_variants_id?: string | undefined;
  attempt?: number | undefined;
}

export interface StageReply {
  statusCode: number;
  headers?: Record<string, string>;
  body: Record<string, unknown>;
}

type Outcome =
  | { outcome: 'done'; attempt: number; method: string; summary: Record<string, unknown> }
  | { outcome: 'failed'; attempt: number; error: string }
  | { outcome: 'superseded'; attempt: number; error: string }
  | { outcome: 'conflict'; error: string; state: Record<string, unknown> | null };

/** Test hooks: called at fixed points of a run (never set in production). */
export interface StageHooks {
  afterExecute?(run: StageRun): Promise<void>;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

async function runOne(
  ctx: StageContext,
  def: StageDefinition,
  req: StageRequest,
  variant: VariantRow | null,
  hooks: StageHooks,
): Promise<Outcome> {
  const subject = {
    step: def.step,
    jobId: req.job_id,
    jobVariantsId: variant?.job_variants_id,
    attempt: req.attempt,
  };
  const start = await stageStart(ctx.pool, subject);
  if (!start.started) {
    const s = start.state;
    const where = s
      ? `at (${s.current_step}, ${s.status}) attempt ${s.attempt}${s.failure_reason ? `, job failed for good: ${s.failure_reason}` : ''}`
      : 'not found';
    ctx.metrics.stageOutcomes.inc({ step: def.step, outcome: 'conflict' });
    return {
      outcome: 'conflict',
      error: `${variant ? 'variant' : 'job'} is not ready for ${def.step}${req.attempt !== undefined ? ` attempt ${req.attempt}` : ''}: ${where}`,
      state: s ? { current_step: s.current_step, status: s.status, attempt: s.attempt } : null,
    };
  }
  const attempt = start.attempt;
  const run: StageRun = { step: def.step, jobId: req.job_id, tenantId: start.tenantId, attempt, variant };
  const finish = { step: def.step, jobId: req.job_id, jobVariantsId: variant?.job_variants_id, attempt };
  const timer = ctx.metrics.stageDuration.startTimer({ step: def.step });
  const log = ctx.log.child({ step: def.step, job_id: req.job_id, job_variants_id: variant?.job_variants_id, attempt });
  log.info('stage started');
  try {
    let out: StageOutput;
    try {
      out = await def.execute(ctx, run);
      await hooks.afterExecute?.(run);
    } catch (err) {
      const error = errorMessage(err);
      await stageFinishFailed(ctx.pool, { ...finish, error: `${def.step}: ${error}` });
      log.warn({ err: error }, 'pipeline step failed');
      timer({ outcome: 'failed' });
      ctx.metrics.stageOutcomes.inc({ step: def.step, outcome: 'failed' });
      return { outcome: 'failed', attempt, error: `${def.step}: ${error}` };
    }
    const committed = await withTransaction(ctx.pool, async (client) => {
      await out.persist(client);
      const ok = await stageFinishDone(client, finish);
      if (!ok) throw new Superseded();
      return true;
    }).catch(async (err: unknown) => {
      if (err instanceof Superseded) return false;
      // The results could not be stored: the step failed (guarded, so a superseded attempt changes nothing).
      const error = `${def.step}: storing the results failed: ${errorMessage(err)}`;
      await stageFinishFailed(ctx.pool, { ...finish, error });
      throw new StoreFailed(error);
    });
    if (!committed) {
      log.warn('attempt superseded while running: results discarded');
      timer({ outcome: 'superseded' });
      ctx.metrics.stageOutcomes.inc({ step: def.step, outcome: 'superseded' });
      return {
        outcome: 'superseded',
        attempt,
        error: `attempt ${attempt} of ${def.step} was superseded while it ran (rescued or cancelled): its results were discarded`,
      };
    }
    log.info({ method: out.method }, 'pipeline step succeeded');
    timer({ outcome: 'done' });
    ctx.metrics.stageOutcomes.inc({ step: def.step, outcome: 'done' });
    return { outcome: 'done', attempt, method: out.method, summary: out.summary };
  } catch (err) {
    if (err instanceof StoreFailed) {
      timer({ outcome: 'failed' });
      ctx.metrics.stageOutcomes.inc({ step: def.step, outcome: 'failed' });
      return { outcome: 'failed', attempt, error: err.message };
    }
    throw err;
  }
}

class Superseded extends Error {}
class StoreFailed extends Error {}

function outcomeBody(o: Outcome, variant: VariantRow | null): Record<string, unknown> {
  const base: Record<string, unknown> = variant ? { job_variants_id: variant.job_variants_id } : {};
  switch (o.outcome) {
    case 'done':
      return { ...base, status: 'done', attempt: o.attempt, method: o.method, ...o.summary };
    case 'failed':
      return { ...base, status: 'failed', attempt: o.attempt, error: o.error };
    case 'superseded':
      return { ...base, status: 'superseded', attempt: o.attempt, error: o.error };
    case 'conflict':
      return { ...base, status: 'conflict', error: o.error, ...(o.state ? { current: o.state } : {}) };
  }
}

const STATUS_OF: Record<Outcome['outcome'], number> = { done: 200, failed: 500, superseded: 409, conflict: 409 };

/** One stage HTTP call: the whole flow above, as a reply. */
export async function handleStageRequest(
  ctx: StageContext,
  def: StageDefinition,
  req: StageRequest,
  hooks: StageHooks = {},
): Promise<StageReply> {
  const step = def.step;
  const job = await getJob(ctx.pool, req.job_id);
  if (!job || job.tenant_id !== req.tenant_id) {
    return { statusCode: 404, body: { error: `job ${req.job_id} not found for tenant ${req.tenant_id}` } };
  }
  let subjects: Array<VariantRow | null>;
  if (isJobLevel(step)) {
    if (req.job_variants_id) {
      return { statusCode: 400, body: { error: `${step} is a job-level step: job_variants_id is not accepted` } };
    }
    subjects = [null];
  } else if (req.job_variants_id) {
    const v = await getVariant(ctx.pool, req.job_id, req.job_variants_id);
    if (!v) {
      return { statusCode: 404, body: { error: `variant ${req.job_variants_id} not found in job ${req.job_id}` } };
    }
    subjects = [v];
  } else {
    const prev = prevStep(step);
    const all = await listVariants(ctx.pool, req.job_id);
    const ready = all.filter(
      (v) =>
        (v.current_step === step &&
          v.status === 'queued' &&
          (req.attempt === undefined || v.attempt === req.attempt)) ||
        (req.attempt === undefined && v.current_step === prev && v.status === 'done'),
    );
    if (ready.length === 0 || job.failure_reason) {
      return {
        statusCode: 409,
        body: {
          error: job.failure_reason
            ? `job ${req.job_id} failed for good (${job.failure_reason}): nothing is ready for ${step}`
            : `no variant of job ${req.job_id} is ready for ${step}`,
          variants: all.map((v) => ({
            job_variants_id: v.job_variants_id,
            current_step: v.current_step,
            status: v.status,
            attempt: v.attempt,
          })),
        },
      };
    }
    subjects = ready;
  }

  const resources = def.resources(ctx);
  const slot = ctx.limiter.tryAcquire(resources);
  if (!slot) {
    for (const r of resources) ctx.metrics.saturated.inc({ step, resource: r });
    return {
      statusCode: 429,
      headers: { 'retry-after': String(ctx.config.retryAfterSeconds) },
      body: { error: `${step} is at its concurrency limit (${resources.join(', ')}): retry later` },
    };
  }
  try {
    const outcomes: Array<{ o: Outcome; v: VariantRow | null }> = [];
    for (const v of subjects) outcomes.push({ o: await runOne(ctx, def, req, v, hooks), v });
    if (subjects.length === 1 && (isJobLevel(step) || req.job_variants_id)) {
      const only = outcomes[0] as { o: Outcome; v: VariantRow | null };
      return {
        statusCode: STATUS_OF[only.o.outcome],
        body: { step, job_id: req.job_id, ...outcomeBody(only.o, only.v) },
      };
    }
    const failed = outcomes.filter((x) => x.o.outcome === 'failed');
    const done = outcomes.filter((x) => x.o.outcome === 'done');
    const statusCode = failed.length > 0 ? 500 : done.length > 0 ? 200 : 409;
    const body: Record<string, unknown> = {
      step,
      job_id: req.job_id,
      status: failed.length > 0 ? 'failed' : done.length > 0 ? 'done' : 'conflict',
      processed: outcomes.length,
      results: outcomes.map((x) => outcomeBody(x.o, x.v)),
    };
    if (failed.length > 0) body.error = `${failed.length} of ${outcomes.length} variants failed ${step}`;
    else if (done.length === 0) body.error = `no variant of job ${req.job_id} could be started for ${step}`;
    return { statusCode, body };
  } finally {
    slot.release();
  }
}

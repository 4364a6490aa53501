/**
 * The state machine of one stage call, through pipeline-core's guarded
 * transitions only (stageStart / stageFinishDone / stageFinishFailed /
 * stageReadBack). What each answer means is docs/stage-api.md:
 *
 *   one request per (step, subject, attempt) in this process (409 at once)
 *   -> ownership (404 job_not_found) -> input caps (422 input_too_long)
 *   -> readiness (409) -> image asset tenancy (422 asset_tenant_mismatch)
 *   -> admission: the step's resources, in a FIFO per resource (limiter.ts);
 *      429 with Retry-After when a queue is full, when the estimated wait is
 *      longer than the request may wait, or when that wait ends without a
 *      slot; the row is untouched (still queued) then
 *   -> stageStart with this request's token (409 with the current state when
 *      not ready; retried on database errors, reading back first, until the
 *      deadline: 503, nothing recorded)
 *   -> the stage's work, bound to the deadline's AbortSignal (when it fires:
 *      failed, `deadline exceeded`, 500)
 *   -> the finish: one transaction of result rows + stageFinishDone, rolled
 *      back when the attempt was superseded meanwhile (409); or
 *      stageFinishFailed with the error (500). Retried on database errors,
 *      reading back first, until the deadline plus FINISH_GRACE_MS; if it
 *      cannot be written, 503 and the result is dropped (the row stays
 *      running and is rescued).
 *
 * The answer is sent only after the finish is written.
 */
import { randomUUID } from 'node:crypto';
import {
  isJobLevel,
  prevStep,
  type RowState,
  type StageSubject,
  type StartResult,
  type Step,
  stageFinishDone,
  stageFinishFailed,
  stageReadBack,
  STEP_GRAPH,
  stageStart,
} from '@feedlyai/pipeline-core';
import type { FastifyBaseLogger } from 'fastify';
import type pg from 'pg';
import type { Storage } from '@feedlyai/storage';
import type { Backends } from '../clients/models.js';
import type { Resource, StageConfig } from '../config.js';
import { backoffUntil, DatabaseUnavailable, isTransientDbError, onClient, retryTransient } from '../db/durable.js';
import { getJobForStage, getVariant, listVariants, type VariantRow } from '../db/queries.js';
import type { StageMetrics } from '../metrics.js';
import type { CpuRunner } from '../workers/pool.js';
import { createDeadline, type Deadline, untilAborted } from './deadline.js';
import { type Admission, AdmissionClosed, type AdmissionQueues, AdmissionRefused } from './limiter.js';
import { insertRunTiming, type RunTiming } from './timings.js';
import type { Warmup } from './warmup.js';

export interface StageContext {
  config: StageConfig;
  pool: pg.Pool;
  storage: Storage;
  backends: Backends;
  cpu: CpuRunner;
  limiter: AdmissionQueues;
  metrics: StageMetrics;
  log: FastifyBaseLogger;
  /** (step, subject, attempt) keys of the requests this process is handling now. */
  inFlight: Set<string>;
  /** Warm-up at boot (warmup.ts), reported by /healthz. */
  warmup: Warmup;
}

export interface StageRun {
  step: Step;
  jobId: string;
  tenantId: string;
  attempt: number;
  /** Variant-level steps only. */
  variant: VariantRow | null;
  /** Fires at the request's deadline with a DeadlineExceeded reason (docs/stage-api.md, "Deadline"). */
  signal: AbortSignal;
  /** Epoch ms of the request's deadline. */
  deadline: number;
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

export interface StageRequestOptions {
  /** Milliseconds left, from a valid `x-pipeline-timeout-ms`; null: the step's own timeout. */
  timeoutMs?: number | null;
}

export interface StageReply {
  statusCode: number;
  headers?: Record<string, string>;
  body: Record<string, unknown>;
}

/** How long after the deadline a finish may still be written (well inside the dispatcher's 5 s margin). */
export const FINISH_GRACE_MS = 2_000;

/** Admission wait and work of a run (stage_run_timings), ms; answered as wait_ms and work_ms. */
interface Took {
  waitMs: number;
  workMs: number;
}

type Outcome =
  | { outcome: 'done'; attempt: number; method: string; summary: Record<string, unknown>; took?: Took }
  | { outcome: 'failed'; attempt: number; error: string; took?: Took }
  | { outcome: 'superseded'; attempt: number; error: string }
  | { outcome: 'conflict'; error: string; state: Record<string, unknown> | null }
  | { outcome: 'gone'; error: string }
  | { outcome: 'unavailable'; attempt?: number; error: string };

/** Test hooks: called at fixed points of a run (never set in production). */
export interface StageHooks {
  /** After every check, just before the subject's start is written. */
  beforeStart?(subject: StageSubject): Promise<void>;
  /** After the work, before the finish is written. */
  afterExecute?(run: StageRun): Promise<void>;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

function inFlightKey(step: Step, subjectId: string, attempt: number | undefined): string {
  return `${step}|${subjectId}|${attempt ?? 'manual'}`;
}

const JOB_NOT_FOUND = 'job_not_found';

type Start = StartResult | { unavailable: unknown };

/**
 * stageStart with this request's token, retried on database errors until the
 * deadline. After an error the start may have committed without its answer
 * reaching us, so the row is read back first: running with our token is our
 * start; a row that is gone is gone; anything else goes to stageStart again,
 * whose guard starts a row that is still ready or reports its state. A start
 * refused after such an error is read back once more: the lost statement may
 * have committed while the retry waited for its row lock.
 */
async function durableStart(
  ctx: StageContext,
  subject: StageSubject & { token: string },
  tenantId: string,
  until: number,
): Promise<Start> {
  const backoff = backoffUntil(until);
  let uncertain = false;
  const ours = async (): Promise<Start | null> => {
    const back = await onClient(ctx.pool, until, (c) => stageReadBack(c, subject));
    if (!back.state) return { started: false, state: null };
    if (back.ours && back.state.status === 'running') return { started: true, attempt: back.state.attempt, tenantId };
    return null;
  };
  for (;;) {
    try {
      if (uncertain) {
        const known = await ours();
        if (known) return known;
      }
      const r = await onClient(ctx.pool, until, (c) => stageStart(c, subject));
      if (r.started || !uncertain) return r;
      return (await ours()) ?? r;
    } catch (err) {
      if (!isTransientDbError(err)) throw err;
      uncertain = true;
      if (!(await backoff.wait())) return { unavailable: err };
    }
  }
}

type FinishWrite =
  | { kind: 'written' }
  | { kind: 'superseded' }
  /** A finish of ours committed although its answer was lost. */
  | { kind: 'committed'; status: 'done' | 'failed' }
  | { kind: 'unavailable'; error: unknown };

/**
 * Writes a finish (`write` answers whether its guarded UPDATE applied),
 * retried on database errors until `until`. After an error the commit may
 * have happened without its answer, so the row is read back first: done or
 * failed at our attempt with our token is our finish; still running at our
 * attempt with our token means it did not commit (write again); anything
 * else means the attempt was superseded. A write refused after such an error
 * is read back once more (the lost commit may have landed while the retry
 * waited for its row lock).
 */
async function durableFinish(
  ctx: StageContext,
  subject: StageSubject & { token: string; attempt: number },
  until: number,
  write: (c: pg.PoolClient) => Promise<boolean>,
): Promise<FinishWrite> {
  const backoff = backoffUntil(until);
  let uncertain = false;
  /** 'running': ours and not finished; otherwise the final answer. */
  const readBack = async (): Promise<FinishWrite | 'running'> => {
    const back = await onClient(ctx.pool, until, (c) => stageReadBack(c, subject));
    const s = back.state;
    if (!back.ours || !s || s.attempt !== subject.attempt) return { kind: 'superseded' };
    if (s.status === 'done' || s.status === 'failed') return { kind: 'committed', status: s.status };
    return s.status === 'running' ? 'running' : { kind: 'superseded' };
  };
  for (;;) {
    try {
      if (uncertain) {
        const known = await readBack();
        if (known !== 'running') return known;
      }
      if (await onClient(ctx.pool, until, write)) return { kind: 'written' };
      if (!uncertain) return { kind: 'superseded' };
      const known = await readBack();
      return known === 'running' ? { kind: 'superseded' } : known;
    } catch (err) {
      if (!isTransientDbError(err)) throw err;
      uncertain = true;
      if (!(await backoff.wait())) return { kind: 'unavailable', error: err };
    }
  }
}

/** The results, their timing and the done transition in one transaction; false (rolled back) when superseded. */
function writeDone(out: StageOutput, finish: Parameters<typeof stageFinishDone>[1], timing: () => RunTiming) {
  return async (c: pg.PoolClient): Promise<boolean> => {
    await c.query('BEGIN');
    await out.persist(c);
    await insertRunTiming(c, timing());
    if (!(await stageFinishDone(c, finish))) {
      await c.query('ROLLBACK');
      return false;
    }
    await c.query('COMMIT');
    return true;
  };
}

function describeState(s: RowState | null): string {
  return s
    ? `at (${s.current_step}, ${s.status}) attempt ${s.attempt}${s.failure_reason ? `, job failed for good: ${s.failure_reason}` : ''}`
    : 'not found';
}

async function runOne(
  ctx: StageContext,
  def: StageDefinition,
  req: StageRequest,
  variant: VariantRow | null,
  hooks: StageHooks,
  deadline: Deadline,
  token: string,
  tenantId: string,
  admission: Admission & { at: number; receivedAt: number },
): Promise<Outcome> {
  const step = def.step;
  // This subject's turn: the resources are held and the subjects before it in this request (if any) are done.
  const turnAt = Date.now();
  const waitMs = admission.waitMs + (turnAt - admission.at);
  const count = (outcome: Outcome['outcome']) => ctx.metrics.stageOutcomes.inc({ step, outcome });
  const subject = { step, jobId: req.job_id, jobVariantsId: variant?.job_variants_id, attempt: req.attempt, token };
  const what = variant ? 'variant' : 'job';
  if (deadline.signal.aborted) {
    count('conflict');
    return {
      outcome: 'conflict',
      error: `${what} not started for ${step}: the request's deadline passed`,
      state: null,
    };
  }
  await hooks.beforeStart?.(subject);
  const start = await durableStart(ctx, subject, tenantId, deadline.at);
  if ('unavailable' in start) {
    count('unavailable');
    return {
      outcome: 'unavailable',
      error: `database unavailable until the deadline: ${step} was not started, nothing recorded (${errorMessage(start.unavailable)})`,
    };
  }
  if (!start.started) {
    if (!start.state) {
      count('gone');
      return { outcome: 'gone', error: `${what} of job ${req.job_id} not found (gone before ${step} started)` };
    }
    const s = start.state;
    count('conflict');
    return {
      outcome: 'conflict',
      error: `${what} is not ready for ${step}${req.attempt !== undefined ? ` attempt ${req.attempt}` : ''}: ${describeState(s)}`,
      state: { current_step: s.current_step, status: s.status, attempt: s.attempt },
    };
  }
  const attempt = start.attempt;
  const run: StageRun = {
    step,
    jobId: req.job_id,
    tenantId: start.tenantId,
    attempt,
    variant,
    signal: deadline.signal,
    deadline: deadline.at,
  };
  const finish = { step, jobId: req.job_id, jobVariantsId: variant?.job_variants_id, attempt };
  const readBack = { ...finish, token };
  const until = deadline.at + FINISH_GRACE_MS;
  const timer = ctx.metrics.stageDuration.startTimer({ step });
  const log = ctx.log.child({ step, job_id: req.job_id, job_variants_id: variant?.job_variants_id, attempt });
  log.info(
    {
      deadline_ms: deadline.budgetMs,
      deadline_from: deadline.source,
      check_ms: Math.round(admission.at - admission.receivedAt - admission.waitMs),
      wait_ms: Math.round(waitMs),
    },
    'stage started',
  );
  let workMs = 0;
  const timing = (outcome: RunTiming['outcome']): RunTiming => ({
    step,
    jobId: req.job_id,
    jobVariantsId: variant?.job_variants_id ?? null,
    attempt,
    outcome,
    resources: admission.resources,
    receivedAt: admission.receivedAt,
    admittedAt: turnAt,
    waitMs,
    workMs,
  });
  const took = (): Took => ({ waitMs: Math.round(waitMs), workMs: Math.round(workMs) });
  /** The timing of a run that did not end done (best effort: it is bookkeeping, the row says what happened). */
  const recordTiming = async (outcome: 'failed' | 'superseded') => {
    try {
      await onClient(ctx.pool, until, (c) => insertRunTiming(c, timing(outcome)));
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'stage run timing not recorded');
    }
  };

  const unavailable = (err: unknown): Outcome => {
    log.error({ err: errorMessage(err) }, 'finish not written: the database stayed away; result dropped');
    timer({ outcome: 'unavailable' });
    count('unavailable');
    return {
      outcome: 'unavailable',
      attempt,
      error: `database unavailable: the finish of ${step} attempt ${attempt} could not be written by the deadline; result dropped, the row stays running until it is rescued (${errorMessage(err)})`,
    };
  };
  const failed = async (error: string): Promise<Outcome> => {
    workMs = Date.now() - turnAt;
    const w = await durableFinish(ctx, readBack, until, (c) => stageFinishFailed(c, { ...finish, error }));
    if (w.kind === 'unavailable') return unavailable(w.error);
    if (w.kind === 'committed' && w.status === 'done') {
      // Cannot happen in practice (a done of ours whose answer was lost before this failure); the row says done.
      timer({ outcome: 'done' });
      count('done');
      return { outcome: 'done', attempt, method: 'unknown', summary: {} };
    }
    if (w.kind === 'superseded') {
      log.warn({ err: error }, 'failed, but the attempt was superseded meanwhile: nothing written');
      await recordTiming('superseded');
      timer({ outcome: 'superseded' });
      count('superseded');
      return {
        outcome: 'superseded',
        attempt,
        error: `attempt ${attempt} of ${step} was superseded while it ran (rescued or cancelled); it had failed: ${error}`,
      };
    }
    log.warn({ err: error, wait_ms: Math.round(waitMs), work_ms: Math.round(workMs) }, 'pipeline step failed');
    await recordTiming('failed');
    timer({ outcome: 'failed' });
    count('failed');
    return { outcome: 'failed', attempt, error, took: took() };
  };

  let out: StageOutput;
  try {
    out = await untilAborted(def.execute(ctx, run), deadline.signal);
    await hooks.afterExecute?.(run);
  } catch (err) {
    return await failed(`${step}: ${errorMessage(err)}`);
  }
  workMs = Date.now() - turnAt;
  let w: FinishWrite;
  try {
    w = await durableFinish(
      ctx,
      readBack,
      until,
      writeDone(out, finish, () => timing('done')),
    );
  } catch (err) {
    // The results could not be stored (not a database outage): the step failed.
    return await failed(`${step}: storing the results failed: ${errorMessage(err)}`);
  }
  if (w.kind === 'unavailable') return unavailable(w.error);
  if (w.kind === 'superseded') {
    log.warn('attempt superseded while running: results discarded');
    await recordTiming('superseded');
    timer({ outcome: 'superseded' });
    count('superseded');
    return {
      outcome: 'superseded',
      attempt,
      error: `attempt ${attempt} of ${step} was superseded while it ran (rescued or cancelled): its results were discarded`,
    };
  }
  if (w.kind === 'committed' && w.status === 'failed') {
    timer({ outcome: 'failed' });
    count('failed');
    return { outcome: 'failed', attempt, error: `${step}: the row says failed` };
  }
  log.info(
    {
      method: out.method,
      read_back: w.kind === 'committed',
      wait_ms: Math.round(waitMs),
      work_ms: Math.round(workMs),
    },
    'pipeline step succeeded',
  );
  timer({ outcome: 'done' });
  count('done');
  return { outcome: 'done', attempt, method: out.method, summary: out.summary, took: took() };
}

function tookBody(t: Took | undefined): Record<string, number> {
  return t ? { wait_ms: t.waitMs, work_ms: t.workMs } : {};
}

function outcomeBody(o: Outcome, variant: VariantRow | null): Record<string, unknown> {
  const base: Record<string, unknown> = variant ? { job_variants_id: variant.job_variants_id } : {};
  switch (o.outcome) {
    case 'done':
      return { ...base, status: 'done', attempt: o.attempt, method: o.method, ...o.summary, ...tookBody(o.took) };
    case 'failed':
      return { ...base, status: 'failed', attempt: o.attempt, error: o.error, ...tookBody(o.took) };
    case 'superseded':
      return { ...base, status: 'superseded', attempt: o.attempt, error: o.error };
    case 'conflict':
      return { ...base, status: 'conflict', error: o.error, ...(o.state ? { current: o.state } : {}) };
    case 'gone':
      return { ...base, status: 'not_found', code: JOB_NOT_FOUND, error: o.error };
    case 'unavailable':
      return {
        ...base,
        status: 'unavailable',
        ...(o.attempt !== undefined ? { attempt: o.attempt } : {}),
        error: o.error,
      };
  }
}

const STATUS_OF: Record<Outcome['outcome'], number> = {
  done: 200,
  failed: 500,
  superseded: 409,
  conflict: 409,
  gone: 404,
  unavailable: 503,
};

/** A 429 of admission: nothing was started, the row is untouched (docs/stage-api.md, "Admission"). */
function refusedReply(ctx: StageContext, step: Step, err: AdmissionRefused): StageReply {
  ctx.metrics.saturated.inc({ step, resource: err.resource });
  ctx.log.info(
    {
      step,
      resource: err.resource,
      reason: err.reason,
      retry_after_s: err.retryAfterS,
      waited_ms: Math.round(err.waitedMs),
    },
    'stage call refused by admission (429)',
  );
  return {
    statusCode: 429,
    headers: { 'retry-after': String(err.retryAfterS) },
    body: {
      error: `${step} not started: ${err.message}; retry after ${err.retryAfterS} s`,
      code: 'busy',
      reason: err.reason,
      resource: err.resource,
      retry_after_s: err.retryAfterS,
      waited_ms: Math.round(err.waitedMs),
      queue: err.queue,
    },
  };
}

function notFound(error: string): StageReply {
  return { statusCode: 404, body: { error, code: JOB_NOT_FOUND } };
}

/** One stage HTTP call: the whole flow above, as a reply. */
export async function handleStageRequest(
  ctx: StageContext,
  def: StageDefinition,
  req: StageRequest,
  hooks: StageHooks = {},
  opts: StageRequestOptions = {},
): Promise<StageReply> {
  const step = def.step;
  if (isJobLevel(step) && req.job_variants_id) {
    return { statusCode: 400, body: { error: `${step} is a job-level step: job_variants_id is not accepted` } };
  }
  const deadline = createDeadline(step, opts.timeoutMs ?? null);
  const held: string[] = [];
  const hold = (subjectId: string): boolean => {
    const key = inFlightKey(step, subjectId, req.attempt);
    if (ctx.inFlight.has(key)) return false;
    ctx.inFlight.add(key);
    held.push(key);
    return true;
  };
  try {
    const direct = isJobLevel(step) ? req.job_id : req.job_variants_id;
    if (direct && !hold(direct)) {
      ctx.metrics.stageOutcomes.inc({ step, outcome: 'conflict' });
      return {
        statusCode: 409,
        body: {
          step,
          job_id: req.job_id,
          ...(req.job_variants_id ? { job_variants_id: req.job_variants_id } : {}),
          status: 'conflict',
          error: `this process is already handling ${step} of this ${isJobLevel(step) ? 'job' : 'variant'}${req.attempt !== undefined ? ` attempt ${req.attempt}` : ''}`,
        },
      };
    }
    return await checkAndRun(ctx, def, req, hooks, deadline, hold);
  } catch (err) {
    if (err instanceof DatabaseUnavailable) {
      ctx.metrics.stageOutcomes.inc({ step, outcome: 'unavailable' });
      return { statusCode: 503, body: { error: `${err.message}; nothing recorded` } };
    }
    throw err;
  } finally {
    for (const key of held) ctx.inFlight.delete(key);
    deadline.dispose();
  }
}

async function checkAndRun(
  ctx: StageContext,
  def: StageDefinition,
  req: StageRequest,
  hooks: StageHooks,
  deadline: Deadline,
  hold: (subjectId: string) => boolean,
): Promise<StageReply> {
  const step = def.step;
  const read = <T>(what: string, fn: (c: pg.PoolClient) => Promise<T>) =>
    retryTransient(ctx.pool, deadline.at, what, fn);

  const job = await read('reading the job', (c) => getJobForStage(c, req.job_id));
  if (!job || job.tenant_id !== req.tenant_id) {
    return notFound(`job ${req.job_id} not found for tenant ${req.tenant_id}`);
  }
  if (job.tooLong) {
    const { field, length, cap } = job.tooLong;
    return {
      statusCode: 422,
      body: {
        error: `${field} of job ${req.job_id} is ${length} characters long, more than the cap of ${cap}`,
        code: 'input_too_long',
        field,
        length,
        cap,
      },
    };
  }

  let subjects: Array<VariantRow | null>;
  let assetsUsed: VariantRow[];
  if (isJobLevel(step)) {
    subjects = [null];
    assetsUsed = await read('reading the variants', (c) => listVariants(c, req.job_id));
  } else if (req.job_variants_id) {
    const id = req.job_variants_id;
    const v = await read('reading the variant', (c) => getVariant(c, req.job_id, id));
    if (!v) return notFound(`variant ${req.job_variants_id} not found in job ${req.job_id}`);
    subjects = [v];
    assetsUsed = [v];
  } else {
    const prev = prevStep(step);
    const all = await read('reading the variants', (c) => listVariants(c, req.job_id));
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
    assetsUsed = ready;
  }

  // Image assets: the job's tenant or none (docs/stage-api.md, "Image assets").
  const foreign = (owner: string | null) => owner !== null && owner !== job.tenant_id;
  const mismatch =
    job.input_asset_id && foreign(job.input_asset_tenant)
      ? { field: 'job_inputs.img_asset_id', asset_id: job.input_asset_id }
      : assetsUsed
          .filter((v) => v.img_asset_id && foreign(v.asset_tenant))
          .map((v) => ({
            field: 'jobs_variants.img_asset_id',
            asset_id: v.img_asset_id,
            job_variants_id: v.job_variants_id,
          }))[0];
  if (mismatch) {
    return {
      statusCode: 422,
      body: {
        error: `image asset ${mismatch.asset_id} (${mismatch.field}) belongs to another tenant than job ${req.job_id}`,
        code: 'asset_tenant_mismatch',
        ...mismatch,
      },
    };
  }

  // Admission: the row is started only once every resource is held (docs/stage-api.md, "Admission").
  const resources = def.resources(ctx);
  const receivedAt = deadline.at - deadline.budgetMs;
  let slot: Admission;
  try {
    slot = await ctx.limiter.acquire(resources, {
      // Half the step's timeout, or of the request's deadline when that is shorter (unless configured).
      maxWaitMs: ctx.limiter.maxWaitMs(
        resources,
        Math.min(STEP_GRAPH[step].timeoutMs, deadline.budgetMs),
        deadline.left(),
      ),
      signal: deadline.signal,
    });
  } catch (err) {
    if (err instanceof AdmissionClosed) {
      // A service answer, not saturation: the dispatcher sends the same attempt again later.
      ctx.metrics.stageOutcomes.inc({ step, outcome: 'unavailable' });
      return { statusCode: 503, body: { error: `${step} not started: ${err.message}; nothing recorded` } };
    }
    if (!(err instanceof AdmissionRefused)) throw err;
    return refusedReply(ctx, step, err);
  }
  const admission = { ...slot, at: Date.now(), receivedAt };
  const token = randomUUID();
  try {
    const single = subjects.length === 1 && (isJobLevel(step) || req.job_variants_id !== undefined);
    const outcomes: Array<{ o: Outcome; v: VariantRow | null }> = [];
    for (const v of subjects) {
      if (!single && v && !hold(v.job_variants_id)) {
        ctx.metrics.stageOutcomes.inc({ step, outcome: 'conflict' });
        const error = `this process is already handling ${step} of variant ${v.job_variants_id}`;
        outcomes.push({ o: { outcome: 'conflict', error, state: null }, v });
        continue;
      }
      outcomes.push({ o: await runOne(ctx, def, req, v, hooks, deadline, token, job.tenant_id, admission), v });
    }
    if (single) {
      const only = outcomes[0] as { o: Outcome; v: VariantRow | null };
      return {
        statusCode: STATUS_OF[only.o.outcome],
        body: { step, job_id: req.job_id, ...outcomeBody(only.o, only.v) },
      };
    }
    const n = (k: Outcome['outcome']) => outcomes.filter((x) => x.o.outcome === k).length;
    const failed = n('failed');
    const done = n('done');
    const unavailable = n('unavailable');
    const statusCode = failed > 0 ? 500 : unavailable > 0 ? 503 : done > 0 ? 200 : 409;
    const body: Record<string, unknown> = {
      step,
      job_id: req.job_id,
      status: failed > 0 ? 'failed' : unavailable > 0 ? 'unavailable' : done > 0 ? 'done' : 'conflict',
      processed: outcomes.length,
      results: outcomes.map((x) => outcomeBody(x.o, x.v)),
    };
    if (failed > 0) body.error = `${failed} of ${outcomes.length} variants failed ${step}`;
    else if (unavailable > 0) body.error = `database unavailable for ${unavailable} of ${outcomes.length} variants`;
    else if (done === 0) body.error = `no variant of job ${req.job_id} could be started for ${step}`;
    return { statusCode, body };
  } finally {
    slot.release();
  }
}

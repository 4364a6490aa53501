/**
 * The pipeline engine: turns state-change notifications (and recovery sweeps)
 * into guarded claims and stage calls. No Fastify and no LISTEN connection
 * here: the listener plugin feeds it raw payloads.
 *
 * Hot path for a variant `(S,'done')` notification: parse, ONE claim round
 * trip (UPDATE ... RETURNING with the run log insert in the same statement),
 * ONE HTTP call. The run row is updated after the HTTP answer, batched with
 * other outcomes (one statement per `runLogFlushMs`), off the path of the next
 * step's dispatch.
 *
 * Several instances: every instance receives every notification, but only the
 * subject's owner (rendezvous hash of the subject over the LISTEN connections
 * the host reports with `setPeers`) claims at once; the others wait
 * `claimDelayMs` and claim only if no notification has shown the subject
 * moving on meanwhile (the owner died or is slow). The guarded UPDATE stays
 * the exactly-once gate: ownership only saves the losing claim statements.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { Dispatcher as UndiciDispatcher } from 'undici';
import { type DispatchOutcome, StageDispatcher } from './dispatcher.js';
import { type EngineLogger, silentLogger } from './logger.js';
import { parseJobNotification, parseVariantNotification } from './notifications.js';
import { sleep } from './semaphore.js';
import { claimFanIn, type FanInPolicy, failJobIfNoVariantSucceeded } from './sql/claimFanIn.js';
import { claimJobNext } from './sql/claimJobNext.js';
import { claimRequested } from './sql/claimRequested.js';
import { claimVariant, claimVariants, variantSuccessor } from './sql/claimVariant.js';
import { type GaveUp, giveUp, rejectStep } from './sql/giveUp.js';
import { type RecoveryRow, recoveryScan } from './sql/recoveryScan.js';
import { rescueStep, timeOutStep } from './sql/rescueStep.js';
import { retryStep } from './sql/retryStep.js';
import { type RunState, RunLogWriter } from './sql/stepRuns.js';
import type { StepSubject } from './sql/subject.js';
import type { ClaimedStep, ClaimTrigger } from './sql/types.js';
import {
  AUTOMATIC_STEPS,
  FAN_IN_FROM,
  FINAL_STEP,
  isJobLevel,
  retryBackoffMs,
  type Step,
  type StepDefinition,
  type StepPolicyOverrides,
  withOverrides,
} from './steps.js';

export interface PipelineEngineOptions {
  pool: pg.Pool;
  stageApiUrl: string;
  stageApiToken?: string | undefined;
  /** Written on every pipeline_step_runs row (default host:pid:random). */
  instanceId?: string | undefined;
  logger?: EngineLogger | undefined;
  fanInPolicy?: FanInPolicy | undefined;
  /** JOB_STATE_LISTENER_RECOVERY_WINDOW (hours, default 24). */
  recoveryWindowHours?: number | undefined;
  /** Bound on stage calls in flight (default 64). */
  maxInFlight?: number | undefined;
  stepOverrides?: StepPolicyOverrides | undefined;
  /** An undici dispatcher instead of the built-in pool (tests). */
  dispatcher?: UndiciDispatcher | undefined;
  /** Re-sends after connection errors (default 5) and their backoff base (default 200 ms). */
  connectionRetries?: number | undefined;
  connectionBackoffBaseMs?: number | undefined;
  retryAfterCapMs?: number | undefined;
  random?: (() => number) | undefined;
  /** How long a non-owner instance waits before claiming a subject itself (default 2000 ms). */
  claimDelayMs?: number | undefined;
  /** Run-log outcomes are written in one statement per this many ms (default 25). */
  runLogFlushMs?: number | undefined;
}

export interface StepEvent {
  jobId: string;
  jobVariantsId: string | null;
  step: Step;
  attempt: number;
  trigger?: ClaimTrigger;
  httpStatus?: number | null;
  durationMs?: number;
  error?: string;
  reason?: string;
}

export interface JobEvent {
  jobId: string;
  reason?: string;
}

export interface EngineEvents {
  'step:dispatched': [StepEvent];
  'step:succeeded': [StepEvent];
  'step:failed': [StepEvent];
  'step:gave-up': [StepEvent];
  'job:done': [JobEvent];
  'job:failed': [JobEvent];
}

export type EngineEventName = keyof EngineEvents;

export interface EngineCounters {
  /** Notifications received (valid or not). */
  events: number;
  /** Malformed notifications skipped. */
  invalid: number;
  /** Steps claimed and sent to the stage. */
  dispatches: number;
  /** Claims lost to another instance, 409s, events that could not lead anywhere. */
  skips: number;
  /** Retries claimed (after a failure). */
  retries: number;
  /** Stuck steps rescued as a new attempt. */
  rescues: number;
  /** Stage failures (5xx, 4xx, unreachable, timeout). */
  failures: number;
  /** Steps given up. */
  giveUps: number;
  /** Transitions claimed by recovery sweeps. */
  recoveries: number;
  /** Recovery sweeps run. */
  recoveryRuns: number;
  /** Notifications of subjects owned by another instance, left to it (claimed later only if it did not). */
  deferred: number;
  /** Deferred claims that were made after the delay (the owner had not moved the subject on). */
  deferredClaims: number;
}

export interface EngineStatus extends EngineCounters {
  instanceId: string;
  fanInPolicy: FanInPolicy;
  inFlight: number;
  waitingForSlot: number;
  pendingRetries: number;
  /** Live instances this one knows of (1 until the host reports peers). */
  peers: number;
  /** Claims currently left to their owner. */
  pendingDeferred: number;
  lastNotificationAt: Date | null;
  closed: boolean;
}

export interface RecoverResult {
  scanned: number;
  recovered: number;
}

export interface CloseOptions {
  /** How long in-flight dispatches may take to finish before they are aborted (default 10 s). */
  graceMs?: number;
}

export class PipelineEngine extends EventEmitter<EngineEvents> {
  readonly instanceId: string;
  readonly fanInPolicy: FanInPolicy;
  readonly graph: Readonly<Record<Step, StepDefinition>>;
  private readonly pool: pg.Pool;
  private readonly log: EngineLogger;
  private readonly dispatcher: StageDispatcher;
  private readonly windowSeconds: number;
  private readonly minRescueAfterMs: number;
  private readonly random: () => number;
  private readonly counters: EngineCounters = {
    events: 0,
    invalid: 0,
    dispatches: 0,
    skips: 0,
    retries: 0,
    rescues: 0,
    failures: 0,
    giveUps: 0,
    recoveries: 0,
    recoveryRuns: 0,
    deferred: 0,
    deferredClaims: 0,
  };
  private lastNotificationAt: Date | null = null;
  /** Work started by this engine (claims, dispatches, run-row updates): close() waits for it. */
  private readonly work = new Set<Promise<unknown>>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private closing = false;
  private closed = false;
  private readonly runLog: RunLogWriter;
  private readonly claimDelayMs: number;
  /** This instance's key and every live instance's key (sorted), from setPeers. */
  private peers: { self: string; all: string[] } | null = null;
  /** Claims left to the subject's owner: subject key -> still-pending check. */
  private readonly deferredClaims = new Map<
    string,
    { stillDue: (step: Step, status: string) => boolean; timer: NodeJS.Timeout; work: () => Promise<unknown> }
  >();

  constructor(opts: PipelineEngineOptions) {
    super();
    this.pool = opts.pool;
    this.instanceId = opts.instanceId ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
    this.log = opts.logger ?? silentLogger;
    this.fanInPolicy = opts.fanInPolicy ?? 'all';
    if (this.fanInPolicy !== 'all' && this.fanInPolicy !== 'any') {
      throw new Error(`fanInPolicy must be 'all' or 'any': ${String(opts.fanInPolicy)}`);
    }
    const hours = opts.recoveryWindowHours ?? 24;
    if (!(hours > 0)) throw new Error(`recoveryWindowHours must be > 0: ${hours}`);
    this.windowSeconds = hours * 3600;
    this.graph = withOverrides(opts.stepOverrides ?? {});
    this.minRescueAfterMs = Math.min(...AUTOMATIC_STEPS.map((s) => this.graph[s].rescueAfterMs));
    this.random = opts.random ?? Math.random;
    this.claimDelayMs = opts.claimDelayMs ?? 2000;
    if (!(this.claimDelayMs >= 0)) throw new Error(`claimDelayMs must be >= 0: ${opts.claimDelayMs}`);
    this.runLog = new RunLogWriter(this.pool, {
      flushMs: opts.runLogFlushMs ?? 25,
      maxBatch: 500,
      onError: (err, lost) =>
        this.log.warn({ err: (err as Error).message, runs: lost }, 'could not record run outcomes'),
    });
    this.dispatcher = new StageDispatcher({
      stageApiUrl: opts.stageApiUrl,
      stageApiToken: opts.stageApiToken,
      maxInFlight: opts.maxInFlight ?? 64,
      connectionRetries: opts.connectionRetries,
      connectionBackoffBaseMs: opts.connectionBackoffBaseMs,
      retryAfterCapMs: opts.retryAfterCapMs,
      dispatcher: opts.dispatcher,
      random: this.random,
      onResend: ({ claimed, reason, waitMs, try: n }) =>
        this.log.warn({ ...fields(claimed), reason, wait_ms: waitMs, try: n }, 'stage call re-sent (same attempt)'),
    });
  }

  status(): EngineStatus {
    return {
      ...this.counters,
      instanceId: this.instanceId,
      fanInPolicy: this.fanInPolicy,
      inFlight: this.dispatcher.inFlight,
      waitingForSlot: this.dispatcher.waiting,
      pendingRetries: this.retryTimers.size,
      peers: this.peers?.all.length ?? 1,
      pendingDeferred: this.deferredClaims.size,
      lastNotificationAt: this.lastNotificationAt,
      closed: this.closed,
    };
  }

  // ---------------------------------------------------------------- notifications

  /** A raw `job_variant_state_changed` payload. Resolves once the claim (if any) is made and its call started. */
  handleVariantNotification(raw: unknown): Promise<void> {
    this.counters.events++;
    this.lastNotificationAt = new Date();
    if (this.closing) return Promise.resolve();
    const parsed = parseVariantNotification(raw);
    if (!parsed.ok) {
      this.skipMalformed('job_variant_state_changed', parsed.error, raw);
      return Promise.resolve();
    }
    const p = parsed.value;
    this.log.info(
      {
        job_id: p.job_id,
        job_variants_id: p.job_variants_id,
        step: p.current_step,
        status: p.status,
        attempt: p.attempt ?? undefined,
      },
      '[LISTENER] Job Variant state change detected',
    );
    const key = `v:${p.job_variants_id}`;
    this.noteProgress(key, p.current_step, p.status);
    const prev = p.current_step;
    if (p.status === 'done') {
      if (prev === FAN_IN_FROM) {
        return this.claimOrDefer(
          `j:${p.job_id}`,
          (step, status) => !isJobLevel(step) && status !== 'failed',
          () => this.tryFanIn(p.job_id, 'notify'),
        );
      }
      if (variantSuccessor(prev)) {
        return this.claimOrDefer(
          key,
          (step, status) => step === prev && status === 'done',
          () =>
            this.claimAndDispatch(
              () =>
                claimVariant(this.pool, {
                  jobVariantsId: p.job_variants_id,
                  prev,
                  trigger: 'notify',
                  instanceId: this.instanceId,
                }),
              { job_id: p.job_id, job_variants_id: p.job_variants_id, step: prev },
            ),
        );
      }
      return Promise.resolve();
    }
    const attempt = p.attempt;
    if (p.status === 'failed' && attempt && !isJobLevel(prev) && this.graph[prev].route) {
      return this.claimOrDefer(
        key,
        (step, status) => step === prev && status === 'failed',
        () => this.onStepFailed({ jobId: p.job_id, jobVariantsId: p.job_variants_id, step: prev }, attempt),
      );
    }
    // queued / running: nothing to claim, no round trip.
    return Promise.resolve();
  }

  /** A raw `job_state_changed` payload. */
  handleJobNotification(raw: unknown): Promise<void> {
    this.counters.events++;
    this.lastNotificationAt = new Date();
    if (this.closing) return Promise.resolve();
    const parsed = parseJobNotification(raw);
    if (!parsed.ok) {
      this.skipMalformed('job_state_changed', parsed.error, raw);
      return Promise.resolve();
    }
    const p = parsed.value;
    this.log.info(
      { job_id: p.job_id, step: p.current_step, status: p.status, attempt: p.attempt ?? undefined },
      '[LISTENER] Job state change detected',
    );
    const key = `j:${p.job_id}`;
    this.noteProgress(key, p.current_step, p.status);
    if (p.manual) return this.track(this.recover({ jobId: p.job_id }).then(() => {}));
    const prev = p.current_step;
    if (isJobLevel(prev)) {
      if (p.status === 'done' && prev === FINAL_STEP) {
        this.log.info({ job_id: p.job_id, step: prev }, 'job done');
        this.emit('job:done', { jobId: p.job_id });
        return Promise.resolve();
      }
      if (p.status === 'done') {
        return this.claimOrDefer(
          key,
          (step, status) => step === prev && status === 'done',
          () =>
            this.claimAndDispatch(
              () => claimJobNext(this.pool, { jobId: p.job_id, prev, trigger: 'notify', instanceId: this.instanceId }),
              { job_id: p.job_id, step: prev },
            ),
        );
      }
      const attempt = p.attempt;
      if (p.status === 'failed' && attempt) {
        return this.claimOrDefer(
          key,
          (step, status) => step === prev && status === 'failed',
          () => this.onStepFailed({ jobId: p.job_id, jobVariantsId: null, step: prev }, attempt),
        );
      }
      return Promise.resolve();
    }
    if (p.status === 'failed') return Promise.resolve(); // failed for good (given up, cancelled)
    // A job row moving in the variant phase: recover that job's lagging variants.
    return this.track(this.recover({ jobId: p.job_id }).then(() => {}));
  }

  // ---------------------------------------------------------------- ownership

  /**
   * The live instances, as keys the host chose (the listener plugin uses the
   * backend pid of each `job_state_listener` connection). `self` is this
   * instance's key; it is added to `all` if missing. With one instance, or
   * before the first call, this instance owns everything.
   */
  setPeers(self: string, all: readonly string[]): void {
    const set = new Set(all);
    set.add(self);
    const next = { self, all: [...set].sort() };
    const before = this.peers;
    this.peers = next;
    if (before && before.self === next.self && before.all.join() === next.all.join()) return;
    // An instance went away (or this one reconnected): claims left to it that this one
    // now owns are made at once instead of after the delay.
    for (const key of [...this.deferredClaims.keys()]) {
      if (this.ownsSubject(key)) this.runDeferred(key);
    }
  }

  /** Whether this instance claims `key` at once (rendezvous hashing over the peers). */
  ownsSubject(key: string): boolean {
    const peers = this.peers;
    if (!peers || peers.all.length <= 1) return true;
    let best = '';
    let bestScore = -1;
    for (const peer of peers.all) {
      const score = fnv1a(`${key}|${peer}`);
      if (score > bestScore) {
        best = peer;
        bestScore = score;
      }
    }
    return best === peers.self;
  }

  /**
   * Runs `work` now if this instance owns the subject; otherwise after
   * `claimDelayMs`, unless a notification meanwhile showed the subject moving
   * on (`stillDue` false). A later event for the same subject replaces it.
   */
  private claimOrDefer(
    key: string,
    stillDue: (step: Step, status: string) => boolean,
    work: () => Promise<unknown>,
  ): Promise<void> {
    if (this.claimDelayMs === 0 || this.ownsSubject(key)) return this.track(work()).then(() => {});
    this.counters.deferred++;
    const earlier = this.deferredClaims.get(key);
    if (earlier) clearTimeout(earlier.timer);
    const timer = setTimeout(() => {
      // Timers run before pending I/O in an event-loop turn: let notifications already
      // received (the owner's claim among them) be handled first, then decide.
      setImmediate(() => {
        if (this.deferredClaims.get(key)?.timer === timer) this.runDeferred(key);
      });
    }, this.claimDelayMs);
    this.deferredClaims.set(key, { stillDue, timer, work });
    return Promise.resolve();
  }

  /** Makes a deferred claim now (its delay ran out, or this instance became the owner). */
  private runDeferred(key: string): void {
    const d = this.deferredClaims.get(key);
    if (!d) return;
    clearTimeout(d.timer);
    this.deferredClaims.delete(key);
    if (this.closing) return;
    this.counters.deferredClaims++;
    void this.track(d.work());
  }

  /** A notification about `key`: drops a deferred claim it shows to be done by someone else. */
  private noteProgress(key: string, step: Step, status: string): void {
    const d = this.deferredClaims.get(key);
    if (!d || d.stillDue(step, status)) return;
    clearTimeout(d.timer);
    this.deferredClaims.delete(key);
    this.counters.skips++;
  }

  private skipMalformed(channel: string, error: string, raw: unknown): void {
    this.counters.invalid++;
    this.counters.skips++;
    const preview = typeof raw === 'string' ? raw.slice(0, 200) : typeof raw;
    this.log.warn({ channel, error, payload_preview: preview }, 'listener error: malformed notification skipped');
  }

  // ---------------------------------------------------------------- claims and dispatch

  private async claimAndDispatch(
    claim: () => Promise<ClaimedStep | null>,
    context: Record<string, unknown>,
  ): Promise<ClaimedStep | null> {
    const claimed = await claim();
    if (!claimed) {
      this.counters.skips++;
      this.log.debug(context, 'skipped because the state changed meanwhile');
      return null;
    }
    this.dispatch(claimed);
    return claimed;
  }

  private async tryFanIn(jobId: string, trigger: ClaimTrigger): Promise<ClaimedStep | null> {
    const claimed = await claimFanIn(this.pool, {
      jobId,
      policy: this.fanInPolicy,
      trigger: trigger === 'notify' ? 'fan_in' : trigger,
      instanceId: this.instanceId,
    });
    if (claimed) {
      this.log.info({ job_id: jobId, step: claimed.step, attempt: claimed.attempt }, 'fan-in: every variant finished');
      this.dispatch(claimed);
      return claimed;
    }
    this.counters.skips++;
    return null;
  }

  /** Starts the stage call of a claimed step (tracked; close() waits for it). */
  private dispatch(claimed: ClaimedStep): void {
    this.counters.dispatches++;
    if (claimed.trigger === 'retry') this.counters.retries++;
    if (claimed.trigger === 'rescue') this.counters.rescues++;
    if (claimed.trigger === 'recovery') this.counters.recoveries++;
    this.log.info({ ...fields(claimed), trigger: claimed.trigger }, '[TRIGGER] pipeline step triggered');
    this.emit('step:dispatched', { ...event(claimed), trigger: claimed.trigger });
    const def = this.graph[claimed.step];
    if (!def.route) return;
    this.track(
      this.dispatcher
        .send({ claimed, route: def.route, timeoutMs: def.timeoutMs })
        .then((outcome) => this.onOutcome(claimed, outcome))
        .catch((err: unknown) => this.log.error({ ...fields(claimed), err }, 'listener error: dispatch failed')),
    );
  }

  private async onOutcome(c: ClaimedStep, o: DispatchOutcome): Promise<void> {
    const base = { ...fields(c), duration_ms: Math.round(o.durationMs) };
    let state: RunState;
    let httpStatus: number | null = null;
    let error: string | null = null;
    switch (o.kind) {
      case 'succeeded':
        state = 'succeeded';
        httpStatus = o.status;
        this.log.info({ ...base, http_status: o.status }, 'pipeline step succeeded');
        this.emit('step:succeeded', { ...event(c), httpStatus: o.status, durationMs: o.durationMs });
        break;
      case 'conflict': {
        state = 'conflict';
        httpStatus = o.status;
        this.counters.skips++;
        const now = await this.readState(c).catch(() => null);
        this.log.info({ ...base, http_status: 409, state: now }, 'skipped because the state changed meanwhile');
        break;
      }
      case 'failed':
        state = 'failed';
        httpStatus = o.status;
        error = o.error;
        this.counters.failures++;
        this.log.warn({ ...base, http_status: o.status, error: o.error }, 'pipeline step failed');
        this.emit('step:failed', { ...event(c), httpStatus: o.status, durationMs: o.durationMs, error: o.error });
        break;
      case 'rejected':
        state = 'rejected';
        httpStatus = o.status;
        error = o.error;
        this.counters.failures++;
        this.log.warn({ ...base, http_status: o.status, error: o.error }, 'pipeline step failed (not retried)');
        this.emit('step:failed', { ...event(c), httpStatus: o.status, durationMs: o.durationMs, error: o.error });
        break;
      case 'unreachable':
      case 'timeout':
        state = o.kind === 'timeout' ? 'timeout' : 'error';
        error = o.error;
        this.counters.failures++;
        this.log.error({ ...base, error: o.error }, 'pipeline step failed (left to rescue)');
        this.emit('step:failed', { ...event(c), httpStatus: null, durationMs: o.durationMs, error: o.error });
        break;
      default:
        state = 'aborted';
        error = o.error;
        this.log.warn({ ...base, error: o.error }, 'stage call aborted on close (left to rescue)');
    }
    this.runLog.add({ runId: c.runId, state, httpStatus, durationMs: o.durationMs, error });
    if (o.kind === 'failed') await this.onStepFailed(subject(c), c.attempt);
    if (o.kind === 'rejected') {
      const gave = await rejectStep(this.pool, {
        ...subject(c),
        attempt: c.attempt,
        error: o.error,
        policy: this.fanInPolicy,
      });
      if (gave) await this.onGaveUp(subject(c), c.attempt, gave);
    }
  }

  private async readState(c: ClaimedStep): Promise<unknown> {
    const r = c.jobVariantsId
      ? await this.pool.query('SELECT current_step, status, attempt FROM jobs_variants WHERE job_variants_id = $1', [
          c.jobVariantsId,
        ])
      : await this.pool.query('SELECT current_step, status, attempt, failure_reason FROM jobs WHERE job_id = $1', [
          c.jobId,
        ]);
    return r.rows[0] ?? null;
  }

  // ---------------------------------------------------------------- failure, retry, give up

  /**
   * A step is (step,'failed') with `attempt`: give it up if it is at its limit,
   * else schedule the retry after the backoff (once per instance; the retry's
   * guard makes one instance win).
   */
  private async onStepFailed(s: StepSubject, attempt: number): Promise<void> {
    const key = `${s.jobVariantsId ?? s.jobId}:${s.step}:${attempt}`;
    if (this.retryTimers.has(key) || this.closing) return;
    const policy = this.graph[s.step].retry;
    const gave = await giveUp(this.pool, { ...s, attempt, maxAttempts: policy.maxAttempts, policy: this.fanInPolicy });
    if (gave) {
      await this.onGaveUp(s, attempt, gave);
      return;
    }
    if (this.retryTimers.has(key) || this.closing) return;
    const delay = retryBackoffMs(policy, attempt, this.random);
    const timer = setTimeout(() => {
      this.retryTimers.delete(key);
      if (this.closing) return;
      this.track(this.tryRetry(s, attempt, 'retry')).catch(() => {});
    }, delay);
    this.retryTimers.set(key, timer);
  }

  private async tryRetry(s: StepSubject, attempt: number, why: string): Promise<void> {
    const claimed = await retryStep(this.pool, {
      ...s,
      attempt,
      maxAttempts: this.graph[s.step].retry.maxAttempts,
      instanceId: this.instanceId,
    });
    if (!claimed) {
      this.counters.skips++;
      this.log.debug({ ...subjectFields(s), attempt, why }, 'skipped because the state changed meanwhile');
      return;
    }
    this.log.info({ ...fields(claimed), previous_attempt: attempt }, 'retrying failed step');
    this.dispatch(claimed);
  }

  private async onGaveUp(s: StepSubject, attempt: number, g: GaveUp): Promise<void> {
    this.counters.giveUps++;
    const reason = `${s.step} failed after ${g.attempts} attempts: ${g.lastError ?? 'unknown error'}`;
    this.log.warn({ ...subjectFields(s), attempt, error: g.lastError }, 'pipeline step failed: gave up');
    this.emit('step:gave-up', { ...s, attempt, reason, error: g.lastError ?? '' });
    if (g.jobFailureReason) {
      this.log.warn({ job_id: s.jobId, reason: g.jobFailureReason }, 'job failed');
      this.emit('job:failed', { jobId: s.jobId, reason: g.jobFailureReason });
      return;
    }
    if (s.jobVariantsId && this.fanInPolicy === 'any') await this.fanInAfterGiveUp(s.jobId, 'notify');
  }

  /** Policy `any`: a variant gave up; the job goes on with the others, or fails when none succeeded. */
  private async fanInAfterGiveUp(jobId: string, trigger: ClaimTrigger): Promise<void> {
    const claimed = await this.tryFanIn(jobId, trigger);
    if (claimed) return;
    const reason = await failJobIfNoVariantSucceeded(this.pool, jobId);
    if (reason) {
      this.log.warn({ job_id: jobId, reason }, 'job failed');
      this.emit('job:failed', { jobId, reason });
    }
  }

  // ---------------------------------------------------------------- recovery

  /**
   * One recovery pass (startup, after a reconnect, the job_state_changed
   * handler scoped to one job, the periodic schedule): every transition that
   * should have happened within the recovery window, claimed through the same
   * guarded functions as live dispatch.
   */
  recover(scope: { jobId?: string } = {}): Promise<RecoverResult> {
    const p = this.runRecovery(scope);
    this.track(p); // close() waits for a sweep in progress
    return p;
  }

  private async runRecovery(scope: { jobId?: string }): Promise<RecoverResult> {
    if (this.closing) return { scanned: 0, recovered: 0 };
    this.counters.recoveryRuns++;
    const scan = await recoveryScan(this.pool, {
      windowSeconds: this.windowSeconds,
      minRescueAfterMs: this.minRescueAfterMs,
      policy: this.fanInPolicy,
      jobId: scope.jobId,
    });
    let recovered = 0;
    // Variants `done` with a step whose successor was never claimed: one claim statement per step.
    const doneByStep = new Map<Step, string[]>();
    const rest: RecoveryRow[] = [];
    for (const row of scan.variants) {
      if (row.status === 'done' && row.jobVariantsId && variantSuccessor(row.step)) {
        const ids = doneByStep.get(row.step) ?? [];
        ids.push(row.jobVariantsId);
        doneByStep.set(row.step, ids);
      } else rest.push(row);
    }
    for (const [prev, ids] of doneByStep) {
      for (let i = 0; i < ids.length && !this.closing; i += RECOVERY_BATCH) {
        const chunk = ids.slice(i, i + RECOVERY_BATCH);
        try {
          const claimed = await claimVariants(this.pool, {
            jobVariantsIds: chunk,
            prev,
            trigger: 'recovery',
            instanceId: this.instanceId,
          });
          for (const c of claimed) this.dispatch(c);
          recovered += claimed.length;
        } catch (err) {
          this.log.error({ step: prev, variants: chunk.length, err }, 'listener error: recovery of a batch failed');
        }
      }
    }
    for (const row of [...rest, ...scan.jobs]) {
      if (this.closing) break;
      try {
        if (await this.recoverRow(row)) recovered++;
      } catch (err) {
        this.log.error({ ...subjectFields(row), err }, 'listener error: recovery of a row failed');
      }
    }
    for (const f of scan.fanIn) {
      if (this.closing) break;
      try {
        if (f.hasSuccess) {
          if (await this.tryFanIn(f.jobId, 'recovery')) recovered++;
        } else if (this.fanInPolicy === 'any') {
          const reason = await failJobIfNoVariantSucceeded(this.pool, f.jobId);
          if (reason) this.emit('job:failed', { jobId: f.jobId, reason });
        }
      } catch (err) {
        this.log.error({ job_id: f.jobId, err }, 'listener error: fan-in recovery failed');
      }
    }
    const scanned = scan.variants.length + scan.jobs.length + scan.fanIn.length;
    this.log.info({ scanned, recovered, job_id: scope.jobId }, 'recovery check');
    if (recovered > 0) this.log.info({ recovered, job_id: scope.jobId }, 'lagging variants recovered');
    return { scanned, recovered };
  }

  private async recoverRow(row: RecoveryRow): Promise<boolean> {
    const s: StepSubject = { jobId: row.jobId, jobVariantsId: row.jobVariantsId, step: row.step };
    const def = this.graph[row.step];
    if (row.status === 'done') {
      const claimed = row.jobVariantsId
        ? await claimVariant(this.pool, {
            jobVariantsId: row.jobVariantsId,
            prev: row.step,
            trigger: 'recovery',
            instanceId: this.instanceId,
          })
        : await claimJobNext(this.pool, {
            jobId: row.jobId,
            prev: row.step,
            trigger: 'recovery',
            instanceId: this.instanceId,
          });
      if (claimed) this.dispatch(claimed);
      return claimed !== null;
    }
    if (!def.route) return false;
    if (row.status === 'failed') {
      if (row.attempt - row.attemptBase >= def.retry.maxAttempts) {
        const gave = await giveUp(this.pool, {
          ...s,
          attempt: row.attempt,
          maxAttempts: def.retry.maxAttempts,
          policy: this.fanInPolicy,
        });
        if (gave) await this.onGaveUp(s, row.attempt, gave);
        return gave !== null;
      }
      // Due when the full (un-jittered) backoff has passed since it failed.
      if (row.ageMs < retryBackoffMs(def.retry, row.attempt, () => 1)) return false;
      const claimed = await retryStep(this.pool, {
        ...s,
        attempt: row.attempt,
        maxAttempts: def.retry.maxAttempts,
        instanceId: this.instanceId,
      });
      if (claimed) this.dispatch(claimed);
      return claimed !== null;
    }
    if (row.status === 'queued' && row.dispatchRequested) {
      const claimed = await claimRequested(this.pool, { ...s, attempt: row.attempt, instanceId: this.instanceId });
      if (claimed) this.dispatch(claimed);
      return claimed !== null;
    }
    if ((row.status === 'queued' || row.status === 'running') && row.ageMs > def.rescueAfterMs) {
      if (row.attempt - row.attemptBase < def.retry.maxAttempts) {
        const claimed = await rescueStep(this.pool, {
          ...s,
          attempt: row.attempt,
          rescueAfterMs: def.rescueAfterMs,
          maxAttempts: def.retry.maxAttempts,
          instanceId: this.instanceId,
        });
        if (claimed) {
          this.log.warn({ ...fields(claimed), previous_attempt: row.attempt, age_ms: row.ageMs }, 'stuck step rescued');
          this.dispatch(claimed);
        }
        return claimed !== null;
      }
      const timedOut = await timeOutStep(this.pool, {
        ...s,
        attempt: row.attempt,
        rescueAfterMs: def.rescueAfterMs,
        maxAttempts: def.retry.maxAttempts,
      });
      if (!timedOut) return false;
      this.counters.failures++;
      const gave = await giveUp(this.pool, {
        ...s,
        attempt: row.attempt,
        maxAttempts: def.retry.maxAttempts,
        policy: this.fanInPolicy,
      });
      if (gave) await this.onGaveUp(s, row.attempt, gave);
      return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- lifecycle

  private track<T>(p: Promise<T>): Promise<T> {
    const tracked = p.catch((err: unknown) => {
      this.log.error({ err }, 'listener error');
      return undefined as T;
    });
    this.work.add(tracked);
    void tracked.finally(() => this.work.delete(tracked));
    return tracked;
  }

  /** Resolves when no claim or dispatch is in progress (tests, close). */
  async idle(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.work.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), Math.min(left, 2_147_000_000));
      });
      const r = await Promise.race([Promise.allSettled([...this.work]).then(() => 'done' as const), timeout]);
      clearTimeout(timer);
      if (r === 'timeout') return false;
    }
    await this.runLog.flush();
    return true;
  }

  /**
   * Stops new claims, lets in-flight dispatches finish within `graceMs`, then
   * aborts them (their steps are left to rescue) and closes the HTTP pool.
   * Safe to call twice.
   */
  async close(opts: CloseOptions = {}): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    for (const d of this.deferredClaims.values()) clearTimeout(d.timer);
    this.deferredClaims.clear();
    const finished = await this.idle(opts.graceMs ?? 10_000);
    if (!finished) {
      this.log.warn({ in_flight: this.dispatcher.inFlight }, 'close: grace period over, aborting stage calls');
      this.dispatcher.abortAll();
      await this.idle(5_000);
    }
    await this.dispatcher.close();
    await this.runLog.flush({ final: true });
    this.closed = true;
    await sleep(0);
  }
}

/** Variants claimed per recovery statement. */
const RECOVERY_BATCH = 500;

/** 32-bit FNV-1a of a string (rendezvous hashing; not for security). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function fields(c: ClaimedStep) {
  return { job_id: c.jobId, job_variants_id: c.jobVariantsId ?? undefined, step: c.step, attempt: c.attempt };
}

function subjectFields(s: StepSubject) {
  return { job_id: s.jobId, job_variants_id: s.jobVariantsId ?? undefined, step: s.step };
}

function subject(c: ClaimedStep): StepSubject {
  return { jobId: c.jobId, jobVariantsId: c.jobVariantsId, step: c.step };
}

function event(c: ClaimedStep): StepEvent {
  return { jobId: c.jobId, jobVariantsId: c.jobVariantsId, step: c.step, attempt: c.attempt };
}

export function createPipelineEngine(opts: PipelineEngineOptions): PipelineEngine {
  return new PipelineEngine(opts);
}

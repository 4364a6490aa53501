/**
 * The pipeline engine: turns state-change notifications and recovery sweeps
 * into guarded claims and stage calls. No Fastify and no LISTEN connection
 * here: the listener plugin feeds it raw payloads, the live LISTEN
 * connections (setPeers), its own connection state (setListenerConnected) and
 * the dead instances (onInstances). The rules it follows are written in
 * docs/healing.md and docs/state-machine.md.
 *
 * Split by concern:
 * - notification routing (this file): a `done` claims the next step, a
 *   `failed` applies the retry rule;
 * - ownership.ts: one claimer per subject across instances;
 * - capacity.ts: a slot is taken before a claim, so claims never outrun the
 *   calls this instance can make;
 * - dispatch.ts: flights deliver a claimed attempt and act on the answer
 *   (answers.ts) through the circuit breakers (breaker.ts, circuits.ts);
 * - recovery.ts: sweeps that decide per row (decide.ts);
 * - durable.ts: outcomes kept while the database is away.
 *
 * Hot path for a variant `(S,'done')` notification: parse, take a slot, ONE
 * claim round trip (UPDATE ... RETURNING with the run log insert in the same
 * statement), ONE HTTP call. The run row is finished after the answer,
 * batched with other outcomes (one statement per `runLogFlushMs`).
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { Dispatcher as UndiciDispatcher } from 'undici';
import { type EngineLogger, silentLogger } from '../logger.js';
import { parseJobNotification, parseVariantNotification } from '../notifications.js';
import { sleep } from '../semaphore.js';
import { claimFanIn, type FanInPolicy, failJobIfNoVariantSucceeded } from '../sql/claimFanIn.js';
import { claimJobNext } from '../sql/claimJobNext.js';
import { claimVariant, claimVariants, variantSuccessor } from '../sql/claimVariant.js';
import { type GaveUp, giveUp, rejectStep } from '../sql/giveUp.js';
import type { RecoveryRow } from '../sql/recoveryScan.js';
import { redispatchStep } from '../sql/redispatchStep.js';
import { rescueStep, timeOutStep } from '../sql/rescueStep.js';
import { retryStep } from '../sql/retryStep.js';
import { RunLogWriter } from '../sql/stepRuns.js';
import type { StepSubject } from '../sql/subject.js';
import type { ClaimedStep, ClaimSqlOptions, ClaimTrigger } from '../sql/types.js';
import {
  AUTOMATIC_STEPS,
  FAN_IN_FROM,
  FAN_IN_TO,
  FINAL_STEP,
  isJobLevel,
  retryBackoffMs,
  type Status,
  type Step,
  type StepDefinition,
  type StepPolicyOverrides,
  withOverrides,
} from '../steps.js';
import type { BreakerOptions, CircuitBreaker } from './breaker.js';
import { Capacity, type Slot } from './capacity.js';
import { type BatchItem, ClaimBatcher } from './claim-batch.js';
import { type CircuitSnapshot, Circuits } from './circuits.js';
import type { Decision } from './decide.js';
import { fields, Flights } from './dispatch.js';
import { DurableWrites } from './durable.js';
import { Ownership } from './ownership.js';
import { type RecoverResult, Recovery, type SweepScope } from './recovery.js';
import { parseBaseUrl, StageClient } from './stage-client.js';

export type { RecoverResult } from './recovery.js';

export interface PipelineEngineOptions {
  pool: pg.Pool;
  /** STAGE_API_URL: the base URL of every step's stage unless `stageUrls` names another. */
  stageApiUrl: string;
  /** Base URL per step (steps not named use stageApiUrl). */
  stageUrls?: Partial<Record<Step, string>> | undefined;
  stageApiToken?: string | undefined;
  /** Written on every claimed row (claimed_by) and run-log row. Default host:pid:random. */
  instanceId?: string | undefined;
  logger?: EngineLogger | undefined;
  fanInPolicy?: FanInPolicy | undefined;
  /** JOB_STATE_LISTENER_RECOVERY_WINDOW (hours, default 24). */
  recoveryWindowHours?: number | undefined;
  /** Bound on stage calls in flight, waits included (default 64). */
  maxInFlight?: number | undefined;
  stepOverrides?: StepPolicyOverrides | undefined;
  /** An undici dispatcher instead of the built-in pools (tests). */
  dispatcher?: UndiciDispatcher | undefined;
  random?: (() => number) | undefined;
  /** How long a non-owner instance waits before claiming a subject itself (default 2000 ms). */
  claimDelayMs?: number | undefined;
  /** Run-log outcomes are written in one statement per this many ms (default 25). */
  runLogFlushMs?: number | undefined;
  /** An instance whose LISTEN connection has been gone this long is dead (default 10,000 ms). */
  deadAfterMs?: number | undefined;
  /** Longest Retry-After honoured (default 30,000 ms). */
  retryAfterCapMs?: number | undefined;
  /** Circuit breaker thresholds and probe timing (defaults in breaker.ts). */
  breaker?: BreakerOptions | undefined;
  /** Notifications waiting for a slot, at most (default 10,000); more are left to the sweep. */
  maxWaitingNotifications?: number | undefined;
  /** Calls in flight per stage base URL, at most (keyed by the URL as given; default: only maxInFlight). */
  maxInFlightPerUrl?: Record<string, number> | undefined;
  /**
   * The claims run as named prepared statements (default true; docs/healing.md §9). Set false
   * behind a connection pooler in transaction mode that cannot keep them (PgBouncer before 1.21).
   */
  preparedStatements?: boolean | undefined;
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

/**
 * A job reached its final state, seen by the one instance that made or
 * received that transition (docs/metrics.md, `pipeline_job_duration_seconds`).
 */
export interface JobFinishedEvent {
  jobId: string;
  status: 'done' | 'failed';
  /** From the job row's created_at to its final transition (database clock). */
  durationSeconds: number;
}

export interface EngineEvents {
  'step:dispatched': [StepEvent];
  'step:succeeded': [StepEvent];
  'step:failed': [StepEvent];
  'step:gave-up': [StepEvent];
  'job:done': [JobEvent];
  'job:failed': [JobEvent];
  'job:finished': [JobFinishedEvent];
}

export type EngineEventName = keyof EngineEvents;

export interface EngineCounters {
  /** Notifications received (valid or not). */
  events: number;
  /** Malformed notifications skipped. */
  invalid: number;
  /** Attempts claimed and handed to a flight (claims, retries, rescues, re-dispatches). */
  dispatches: number;
  /** Claims lost to another instance, 409s, rows that moved on meanwhile. */
  skips: number;
  /** Retries claimed (after a failure the stage recorded). */
  retries: number;
  /** Running steps past their deadline rescued as a new attempt. */
  rescues: number;
  /** Failures that count: recorded 5xx, 400/422 rejections, time-outs. */
  failures: number;
  /** Steps given up. */
  giveUps: number;
  /** Transitions claimed by recovery sweeps. */
  recoveries: number;
  /** Recovery sweeps run. */
  recoveryRuns: number;
  /** Notifications of subjects owned by another instance, left to it. */
  deferred: number;
  /** Deferred claims made after the delay (the owner had not moved the subject on). */
  deferredClaims: number;
  /** Deferred claims dropped because a notification showed the owner moved the subject on (no statement). */
  deferredDropped: number;
  /** Answers that meant the stage service was unavailable (no attempt used). */
  serviceFailures: number;
  /** 429 answers waited out. */
  busyWaits: number;
  /** Requests that re-sent an attempt already sent (after a service failure or a 429). */
  resends: number;
  /** Queued rows of dead (or missing) claimers taken over. */
  redispatches: number;
  /** Own queued rows found by a sweep without a call in flight, sent again. */
  resendsOwn: number;
  /** Times a circuit opened. */
  circuitOpens: number;
  /** Notifications not queued because the wait queue was full (left to the sweep). */
  notificationOverflow: number;
}

export interface EngineStatus extends EngineCounters {
  instanceId: string;
  fanInPolicy: FanInPolicy;
  /** Slots in use: calls in flight, busy waits and waits for a circuit included. */
  inFlight: number;
  /** Work waiting for a slot (notifications, retries, sweeps). */
  waitingForSlot: number;
  pendingRetries: number;
  /** Live instances this one knows of (1 until the host reports peers). */
  peers: number;
  /** Claims currently left to their owner. */
  pendingDeferred: number;
  /**
   * How long a non-owner now waits before claiming itself: claimDelayMs, or 4x this
   * instance's recent notification-to-claim time, if longer (docs/healing.md, "ownership").
   */
  claimDelayMs: number;
  /** Outcomes waiting for the database. */
  outcomesKept: number;
  /** Outcomes that could not be written and were dropped (should stay 0). */
  outcomesDropped: number;
  /** This instance sends nothing while it may be considered dead (its LISTEN connection is away). */
  paused: boolean;
  circuits: CircuitSnapshot[];
  lastNotificationAt: Date | null;
  closed: boolean;
}

export interface CloseOptions {
  /** How long calls already at a stage may take to finish before they are aborted (default 10 s). */
  graceMs?: number;
}

/** Default of deadAfterMs: the default reconnect delay (5 s) plus 5 s. */
export const DEFAULT_DEAD_AFTER_MS = 10_000;

export class PipelineEngine extends EventEmitter<EngineEvents> {
  readonly instanceId: string;
  readonly fanInPolicy: FanInPolicy;
  readonly graph: Readonly<Record<Step, StepDefinition>>;
  readonly deadAfterMs: number;
  private readonly pool: pg.Pool;
  private readonly log: EngineLogger;
  private readonly windowSeconds: number;
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
    deferredDropped: 0,
    serviceFailures: 0,
    busyWaits: 0,
    resends: 0,
    redispatches: 0,
    resendsOwn: 0,
    circuitOpens: 0,
    notificationOverflow: 0,
  };
  private lastNotificationAt: Date | null = null;
  /** Work started by this engine (claims, flights, sweeps): close() waits for it. */
  private readonly work = new Set<Promise<unknown>>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private closing = false;
  private closed = false;
  private readonly runLog: RunLogWriter;
  private readonly urls: Record<Step, string>;
  private readonly client: StageClient;
  private readonly circuits: Circuits;
  private readonly capacity: Capacity;
  private readonly flights: Flights;
  private readonly ownership: Ownership;
  private readonly durable: DurableWrites;
  private readonly recovery: Recovery;
  private readonly claims: ClaimBatcher;
  /** How the claims are sent (named prepared statements unless the host turned them off). */
  private readonly claimSql: ClaimSqlOptions;
  /** Listener connection state (the host reports it); sends pause when it may look dead. */
  private connected = true;
  private disconnectedAt: number | null = null;
  /** Dead instances whose rows this instance already looked for. */
  private deadSeen = new Set<string>();
  /** Moving average of notification -> claim answered, ms: claims made at once, and deferred ones that lost (ownership's patience). */
  private claimLatencyMs = 0;

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
    this.deadAfterMs = opts.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS;
    this.claimSql = { prepared: opts.preparedStatements ?? true };
    if (!(this.deadAfterMs >= 100)) throw new Error(`deadAfterMs must be >= 100: ${opts.deadAfterMs}`);
    this.graph = withOverrides(opts.stepOverrides ?? {});
    this.random = opts.random ?? Math.random;
    parseBaseUrl(opts.stageApiUrl);
    this.urls = {} as Record<Step, string>;
    for (const step of AUTOMATIC_STEPS) {
      const url = opts.stageUrls?.[step] ?? opts.stageApiUrl;
      parseBaseUrl(url);
      this.urls[step] = url.replace(/\/+$/, '');
    }
    const maxInFlight = opts.maxInFlight ?? 64;
    const perUrl = new Map<string, number>();
    for (const [url, n] of Object.entries(opts.maxInFlightPerUrl ?? {})) {
      parseBaseUrl(url);
      if (!(Number.isInteger(n) && n >= 1)) throw new Error(`maxInFlightPerUrl[${url}] must be a positive integer`);
      perUrl.set(url.replace(/\/+$/, ''), n);
    }
    this.runLog = new RunLogWriter(this.pool, {
      flushMs: opts.runLogFlushMs ?? 25,
      maxBatch: 500,
      onError: (err, lost) =>
        this.log.warn({ err: (err as Error).message, runs: lost }, 'could not record run outcomes'),
    });
    this.client = new StageClient({
      token: opts.stageApiToken,
      connections: maxInFlight,
      dispatcher: opts.dispatcher,
    });
    this.circuits = new Circuits(
      (step) => this.urlOf(step),
      this.graph,
      this.log,
      {
        halfOpen: (b) => this.onHalfOpen(b),
        closed: (b, openMs) => this.onCircuitClosed(b, openMs),
      },
      opts.breaker
        ? {
            serviceFailures: opts.breaker.serviceFailures ?? 3,
            fiveHundreds: opts.breaker.fiveHundreds ?? 10,
            fiveHundredSubjects: opts.breaker.fiveHundredSubjects ?? 5,
            probeBaseMs: opts.breaker.probeBaseMs ?? 500,
            probeMaxMs: opts.breaker.probeMaxMs ?? 5_000,
          }
        : undefined,
    );
    this.capacity = new Capacity(
      maxInFlight,
      (step) => this.circuits.of(step),
      (step) => this.urlOf(step),
      () => this.paused(),
      opts.maxWaitingNotifications ?? 10_000,
      {
        perStep: (step) => this.graph[step].maxInFlight,
        perUrl: (url) => perUrl.get(url),
      },
    );
    this.durable = new DurableWrites({
      log: this.log,
      ping: () => this.pool.query('SELECT 1'),
      onBack: () => {
        // Within seconds of the database coming back: our own queued rows whose calls did not
        // complete are sent again, and what was missed meanwhile is claimed.
        void this.recover({ fresh: true });
      },
    });
    this.flights = new Flights({
      pool: this.pool,
      client: this.client,
      capacity: this.capacity,
      circuits: this.circuits,
      graph: this.graph,
      urlOf: (step) => this.urlOf(step),
      log: this.log,
      durable: this.durable,
      runLog: this.runLog,
      random: this.random,
      paused: () => this.paused(),
      track: (p) => this.track(p),
      retryAfterCapMs: opts.retryAfterCapMs,
      instanceId: this.instanceId,
      outcomes: {
        succeeded: (c, status, ms) => {
          this.log.info(
            { ...fields(c), http_status: status ?? undefined, duration_ms: Math.round(ms) },
            'pipeline step succeeded',
          );
          this.emit('step:succeeded', { ...event(c), httpStatus: status, durationMs: ms });
          if (c.step === FINAL_STEP && !c.jobVariantsId) this.finished(c.jobId, 'done');
        },
        failed: async (c, status, error) => {
          this.counters.failures++;
          this.log.warn({ ...fields(c), http_status: status ?? undefined, error }, 'pipeline step failed');
          this.emit('step:failed', { ...event(c), httpStatus: status, error });
          await this.onStepFailed(subject(c), c.attempt);
        },
        rejected: async (c, status, error) => {
          this.counters.failures++;
          this.log.warn({ ...fields(c), http_status: status, error }, 'pipeline step failed (not retried)');
          this.emit('step:failed', { ...event(c), httpStatus: status, error });
          await this.durable.do(`reject ${describe(c)}`, async () => {
            const gave = await rejectStep(this.pool, {
              ...subject(c),
              attempt: c.attempt,
              error,
              policy: this.fanInPolicy,
            });
            if (gave) await this.onGaveUp(subject(c), c.attempt, gave);
          });
        },
        rescue: (c) => this.rescueNow(c),
        count: (name) => {
          this.counters[name]++;
        },
      },
    });
    const claimDelayMs = opts.claimDelayMs ?? 2000;
    // A non-owner waits at least claimDelayMs, and 4x this instance's own recent notification-to-claim
    // time: when claims take seconds (a saturated machine), the owner's do too, and racing it only
    // adds losing statements.
    this.ownership = new Ownership(claimDelayMs, () => (claimDelayMs === 0 ? 0 : 4 * this.claimLatencyMs));
    this.claims = new ClaimBatcher((items) =>
      // A lone claim (the usual case below full load) takes the single-row statement, planned
      // once per connection: about half the time of the batch form (docs/benchmarks.md).
      items.length === 1
        ? claimVariant(
            this.pool,
            { ...(items[0] as BatchItem), trigger: 'notify', instanceId: this.instanceId },
            this.claimSql,
          ).then((c) => (c ? [c] : []))
        : claimVariants(this.pool, { items, trigger: 'notify', instanceId: this.instanceId }, this.claimSql),
    );
    const minRescueAfterMs = Math.min(...AUTOMATIC_STEPS.map((s) => this.graph[s].rescueAfterMs));
    this.recovery = new Recovery({
      pool: this.pool,
      graph: this.graph,
      fanInPolicy: this.fanInPolicy,
      self: this.instanceId,
      deadAfterMs: this.deadAfterMs,
      windowSeconds: this.windowSeconds,
      minRescueAfterMs,
      log: this.log,
      capacity: this.capacity,
      circuits: this.circuits,
      closing: () => this.closing,
      inFlight: (row, since) => this.flights.has(row, row.attempt) || this.flights.endedSince(row, row.attempt, since),
      act: (row, d, slot) => this.act(row, d, slot),
      claimNextBatch: (prev, rows, slots) => this.claimNextBatch(prev, rows, slots),
      fanIn: (jobId, hasSuccess, slot) => this.recoverFanIn(jobId, hasSuccess, slot),
    });
  }

  /** The stage base URL of a step. */
  urlOf(step: Step): string {
    return this.urls[step] ?? this.urls.vlm_analyze;
  }

  status(): EngineStatus {
    return {
      ...this.counters,
      deferred: this.ownership.deferredCount,
      deferredClaims: this.ownership.deferredClaims,
      deferredDropped: this.ownership.dropped,
      circuitOpens: this.circuits.all().reduce((n, b) => n + b.opens, 0),
      notificationOverflow: this.capacity.overflow,
      recoveryRuns: this.recovery.runs,
      instanceId: this.instanceId,
      fanInPolicy: this.fanInPolicy,
      inFlight: this.capacity.inUse,
      waitingForSlot: this.capacity.waiting,
      pendingRetries: this.retryTimers.size,
      peers: this.ownership.count,
      pendingDeferred: this.ownership.pending,
      claimDelayMs: this.ownership.currentDelayMs,
      outcomesKept: this.durable.size + this.runLog.pending,
      outcomesDropped: this.durable.dropped,
      paused: this.paused(),
      circuits: this.circuits.snapshot(),
      lastNotificationAt: this.lastNotificationAt,
      closed: this.closed,
    };
  }

  // ---------------------------------------------------------------- notifications

  /** A raw `job_variant_state_changed` payload. Resolves once the claim (if any, and if a slot was free) is made. */
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
    // Info for the changes the engine acts on (done, failed); the queued/running that every
    // claim and start produce are at debug (two of every step's three notifications).
    const level = p.status === 'done' || p.status === 'failed' ? 'info' : 'debug';
    this.log[level](
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
    const receivedAt = performance.now();
    if (this.ownership.noteProgress(key, p.current_step, p.status)) this.logDropped(p);
    const prev = p.current_step;
    if (p.status === 'done') {
      if (prev === FAN_IN_FROM) {
        const jobKey = `j:${p.job_id}`;
        return this.ownership.claimOrDefer(
          jobKey,
          (step, status) => !isJobLevel(step) && status !== 'failed',
          () => this.withSlot(FAN_IN_TO, jobKey, (slot) => this.tryFanIn(p.job_id, 'notify', slot)),
          () => this.capacity.free(FAN_IN_TO) > 0,
        );
      }
      const next = variantSuccessor(prev);
      if (next) {
        return this.ownership.claimOrDefer(
          key,
          (step, status) => step === prev && status === 'done',
          (deferred) =>
            this.withSlot(next, key, (slot) =>
              this.claimWith(
                slot,
                () => this.claims.add({ jobVariantsId: p.job_variants_id, prev }),
                { job_id: p.job_id, job_variants_id: p.job_variants_id, step: next },
                { receivedAt, deferred },
              ),
            ),
          () => this.capacity.free(next) > 0,
        );
      }
      return Promise.resolve();
    }
    const attempt = p.attempt;
    if (p.status === 'failed' && attempt && !isJobLevel(prev) && this.graph[prev].route) {
      return this.ownership.claimOrDefer(
        key,
        (step, status) => step === prev && status === 'failed',
        () => this.track(this.onStepFailed({ jobId: p.job_id, jobVariantsId: p.job_variants_id, step: prev }, attempt)),
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
    const level = p.status === 'done' || p.status === 'failed' || p.manual ? 'info' : 'debug';
    this.log[level](
      { job_id: p.job_id, step: p.current_step, status: p.status, attempt: p.attempt ?? undefined },
      '[LISTENER] Job state change detected',
    );
    const key = `j:${p.job_id}`;
    if (this.ownership.noteProgress(key, p.current_step, p.status)) this.logDropped(p);
    if (p.manual) return this.track(this.recover({ jobId: p.job_id })).then(() => {});
    const prev = p.current_step;
    if (isJobLevel(prev)) {
      if (p.status === 'done' && prev === FINAL_STEP) {
        this.log.info({ job_id: p.job_id, step: prev }, 'job done');
        this.emit('job:done', { jobId: p.job_id });
        return Promise.resolve();
      }
      if (p.status === 'done') {
        return this.ownership.claimOrDefer(
          key,
          (step, status) => step === prev && status === 'done',
          () =>
            this.withSlot(FINAL_STEP, key, (slot) =>
              this.claimWith(
                slot,
                () =>
                  claimJobNext(
                    this.pool,
                    { jobId: p.job_id, prev, trigger: 'notify', instanceId: this.instanceId },
                    this.claimSql,
                  ),
                { job_id: p.job_id, step: FINAL_STEP },
              ),
            ),
        );
      }
      const attempt = p.attempt;
      if (p.status === 'failed' && attempt) {
        return this.ownership.claimOrDefer(
          key,
          (step, status) => step === prev && status === 'failed',
          () => this.track(this.onStepFailed({ jobId: p.job_id, jobVariantsId: null, step: prev }, attempt)),
        );
      }
      return Promise.resolve();
    }
    if (p.status === 'failed') return Promise.resolve(); // failed for good (given up, cancelled)
    // A job row moving in the variant phase: recover that job's lagging variants.
    return this.track(this.recover({ jobId: p.job_id })).then(() => {});
  }

  // ---------------------------------------------------------------- ownership and liveness

  /**
   * A deferred claim dropped before any statement ran (docs/logs.md, "Skips"): the owner's
   * claim arrived first. Nothing was tried, so debug only; a claim statement that lost is info.
   */
  private logDropped(p: { job_id: string; job_variants_id?: string; current_step: Step; status: Status }): void {
    this.log.debug(
      { job_id: p.job_id, job_variants_id: p.job_variants_id, step: p.current_step, status: p.status },
      'deferred claim dropped: the owner moved the subject on',
    );
  }

  /**
   * The live instances, as keys the host chose (the listener plugin uses the
   * backend pid of each `job_state_listener` connection). `self` is this
   * instance's key.
   */
  setPeers(self: string, all: readonly string[]): void {
    this.ownership.setPeers(self, all);
  }

  /** Whether this instance claims `key` at once (rendezvous hashing over the peers). */
  ownsSubject(key: string): boolean {
    return this.ownership.owns(key);
  }

  /**
   * The host's LISTEN connection went away (false) or is back and registered
   * (true). While it is away for longer than half of deadAfterMs, peers may
   * soon consider this instance dead and re-dispatch its rows: it sends and
   * claims nothing until it is back, and then first drops the flights whose
   * rows a peer took over.
   */
  async setListenerConnected(connected: boolean): Promise<void> {
    if (!connected) {
      if (this.connected) {
        this.connected = false;
        this.disconnectedAt = Date.now();
      }
      return;
    }
    const downFor = this.disconnectedAt === null ? 0 : Date.now() - this.disconnectedAt;
    this.connected = true;
    this.disconnectedAt = null;
    if (downFor >= this.pauseAfterMs) {
      const dropped = await this.flights.revalidate();
      if (dropped > 0)
        this.log.warn({ dropped, down_ms: downFor }, 'flights dropped: a peer took their rows over meanwhile');
    }
    this.flights.wakeAll();
    this.capacity.pump();
  }

  private get pauseAfterMs(): number {
    return Math.floor(this.deadAfterMs / 2);
  }

  /** Whether sends are paused (this instance's LISTEN connection has been away too long). */
  paused(): boolean {
    return !this.connected && this.disconnectedAt !== null && Date.now() - this.disconnectedAt >= this.pauseAfterMs;
  }

  /**
   * The liveness check's view of the instances (database clock). The queued
   * rows of instances newly found dead are re-dispatched at once.
   */
  onInstances(o: { dead: readonly string[] }): void {
    if (this.closing) return;
    const dead = new Set(o.dead);
    dead.delete(this.instanceId);
    const fresh = [...dead].filter((d) => !this.deadSeen.has(d));
    this.deadSeen = dead;
    if (fresh.length === 0) return;
    this.log.info({ dead: fresh }, 'instances found dead: re-dispatching their queued steps');
    void this.track(this.recovery.sweep({ claimers: fresh }));
  }

  private skipMalformed(channel: string, error: string, raw: unknown): void {
    this.counters.invalid++;
    this.counters.skips++;
    const preview = typeof raw === 'string' ? raw.slice(0, 200) : typeof raw;
    this.log.warn({ channel, error, payload_preview: preview }, 'listener error: malformed notification skipped');
  }

  // ---------------------------------------------------------------- claims and dispatch

  /**
   * Runs `fn` with a capacity slot for a call of `step`: at once, or when a
   * slot frees (FIFO per stage URL, at most maxWaitingNotifications; beyond
   * that the subject is left to the sweep). Resolves when `fn` has run, or
   * when the work was queued.
   */
  private withSlot(step: Step, key: string, fn: (slot: Slot) => Promise<unknown>): Promise<void> {
    let started: Promise<unknown> | null = null;
    const queued = this.capacity.whenFree(
      step,
      (slot) => {
        if (this.closing) {
          slot.release();
          return;
        }
        started = this.track(fn(slot));
      },
      key,
    );
    if (!queued) this.log.debug({ key, step }, 'no free slot and the wait queue is full: left to the sweep');
    return started ? (started as Promise<unknown>).then(() => {}) : Promise.resolve();
  }

  /**
   * One guarded claim with `slot` held: the slot goes to the flight, or back when the claim lost.
   * `timing` (a notification's claim) feeds the latency that stretches a non-owner's wait.
   */
  private async claimWith(
    slot: Slot,
    claim: () => Promise<ClaimedStep | null>,
    context: Record<string, unknown>,
    timing?: { receivedAt: number; deferred: boolean },
  ): Promise<ClaimedStep | null> {
    let claimed: ClaimedStep | null;
    try {
      claimed = await claim();
    } catch (err) {
      slot.release();
      this.durable.noteError(err);
      throw err;
    }
    // A claim made at once measures how long a notification takes to become a claim here. A
    // deferred claim that lost measures it too, from the other side: the owner moved the subject on,
    // later than the wait (a saturated machine; waiting longer saves the losing statements). A
    // deferred claim that won measures nothing: the owner is silent, and its time includes the
    // wait itself, so counting it would stretch the next wait by a third each time (docs/healing.md).
    if (timing && (!timing.deferred || !claimed)) {
      const ms = performance.now() - timing.receivedAt;
      this.claimLatencyMs = this.claimLatencyMs === 0 ? ms : 0.9 * this.claimLatencyMs + 0.1 * ms;
    }
    if (!claimed) {
      slot.release();
      this.counters.skips++;
      this.log.info(context, 'skipped because the state changed meanwhile');
      return null;
    }
    this.dispatch(claimed, slot);
    return claimed;
  }

  private async tryFanIn(jobId: string, trigger: ClaimTrigger, slot: Slot): Promise<ClaimedStep | null> {
    let claimed: ClaimedStep | null;
    try {
      claimed = await claimFanIn(
        this.pool,
        {
          jobId,
          policy: this.fanInPolicy,
          trigger: trigger === 'notify' ? 'fan_in' : trigger,
          instanceId: this.instanceId,
        },
        this.claimSql,
      );
    } catch (err) {
      slot.release();
      this.durable.noteError(err);
      throw err;
    }
    if (claimed) {
      this.log.info({ job_id: jobId, step: claimed.step, attempt: claimed.attempt }, 'fan-in: every variant finished');
      this.dispatch(claimed, slot);
      return claimed;
    }
    slot.release();
    this.counters.skips++;
    return null;
  }

  /** Hands a claimed attempt to a flight (which owns `slot` from here). */
  private dispatch(claimed: ClaimedStep, slot: Slot): void {
    this.counters.dispatches++;
    if (claimed.trigger === 'retry') this.counters.retries++;
    if (claimed.trigger === 'rescue') this.counters.rescues++;
    if (claimed.trigger === 'recovery') this.counters.recoveries++;
    if (claimed.trigger === 'redispatch') this.counters.redispatches++;
    this.log.info({ ...fields(claimed), trigger: claimed.trigger }, '[TRIGGER] pipeline step triggered');
    this.emit('step:dispatched', { ...event(claimed), trigger: claimed.trigger });
    if (!this.graph[claimed.step].route) {
      slot.release();
      return;
    }
    this.flights.start(claimed, slot);
  }

  /** The flight got no answer by the deadline and the row is still running: rescue it now. */
  private async rescueNow(c: ClaimedStep): Promise<ClaimedStep | null> {
    const s = subject(c);
    const max = this.graph[c.step].retry.maxAttempts;
    for (;;) {
      if (this.closing) return null;
      try {
        const next = await rescueStep(this.pool, {
          ...s,
          attempt: c.attempt,
          olderThanMs: 0,
          maxAttempts: max,
          instanceId: this.instanceId,
        });
        if (next) {
          this.counters.dispatches++;
          this.counters.rescues++;
          this.log.warn({ ...fields(next), previous_attempt: c.attempt }, 'no answer by the deadline: step rescued');
          this.emit('step:dispatched', { ...event(next), trigger: 'rescue' });
          return next;
        }
        if (await timeOutStep(this.pool, { ...s, attempt: c.attempt, olderThanMs: 0, maxAttempts: max })) {
          this.counters.failures++;
          await this.durable.do(`give up ${describe(c)}`, async () => {
            const gave = await giveUp(this.pool, {
              ...s,
              attempt: c.attempt,
              maxAttempts: max,
              policy: this.fanInPolicy,
            });
            if (gave) await this.onGaveUp(s, c.attempt, gave);
          });
        }
        return null;
      } catch (err) {
        this.durable.noteError(err);
        await sleep(1_000);
      }
    }
  }

  // ---------------------------------------------------------------- failure, retry, give up

  /**
   * A step is (step,'failed') with `attempt`: give it up if it is at its limit,
   * else schedule the retry after the backoff (once per instance; the retry's
   * guard makes one instance win). Kept until the database takes it.
   */
  private async onStepFailed(s: StepSubject, attempt: number): Promise<void> {
    const key = `${s.jobVariantsId ?? s.jobId}:${s.step}:${attempt}`;
    if (this.retryTimers.has(key) || this.closing) return;
    const policy = this.graph[s.step].retry;
    await this.durable.do(`retry rule ${s.step} attempt ${attempt}`, async () => {
      if (this.retryTimers.has(key) || this.closing) return;
      const gave = await giveUp(this.pool, {
        ...s,
        attempt,
        maxAttempts: policy.maxAttempts,
        policy: this.fanInPolicy,
      });
      if (gave) {
        await this.onGaveUp(s, attempt, gave);
        return;
      }
      if (this.retryTimers.has(key) || this.closing) return;
      this.armRetry(s, attempt, key, retryBackoffMs(policy, attempt, this.random));
    });
  }

  private armRetry(s: StepSubject, attempt: number, key: string, delayMs: number): void {
    const timer = setTimeout(() => {
      this.retryTimers.delete(key);
      if (this.closing) return;
      void this.withSlot(s.step, `retry:${key}`, (slot) => this.tryRetry(s, attempt, key, slot));
    }, delayMs);
    this.retryTimers.set(key, timer);
  }

  private async tryRetry(s: StepSubject, attempt: number, key: string, slot: Slot): Promise<void> {
    let claimed: ClaimedStep | null;
    try {
      claimed = await retryStep(this.pool, {
        ...s,
        attempt,
        maxAttempts: this.graph[s.step].retry.maxAttempts,
        instanceId: this.instanceId,
      });
    } catch (err) {
      slot.release();
      this.durable.noteError(err);
      // Kept: tried again when the database answers (the sweep after it comes back also finds it).
      if (!this.closing && !this.retryTimers.has(key)) this.armRetry(s, attempt, key, 1_000);
      return;
    }
    if (!claimed) {
      slot.release();
      this.counters.skips++;
      this.log.info({ ...subjectFields(s), attempt, why: 'retry' }, 'skipped because the state changed meanwhile');
      return;
    }
    this.log.info({ ...fields(claimed), previous_attempt: attempt }, 'retrying failed step');
    this.dispatch(claimed, slot);
  }

  private async onGaveUp(s: StepSubject, attempt: number, g: GaveUp): Promise<void> {
    this.counters.giveUps++;
    const reason = `${s.step} failed after ${g.attempts} attempts: ${g.lastError ?? 'unknown error'}`;
    this.log.warn({ ...subjectFields(s), attempt, error: g.lastError }, 'pipeline step failed: gave up');
    this.emit('step:gave-up', { ...s, attempt, reason, error: g.lastError ?? '' });
    if (g.jobFailureReason) {
      this.log.warn({ job_id: s.jobId, reason: g.jobFailureReason }, 'job failed');
      this.emit('job:failed', { jobId: s.jobId, reason: g.jobFailureReason });
      this.finished(s.jobId, 'failed');
      return;
    }
    if (s.jobVariantsId && this.fanInPolicy === 'any') {
      await this.withSlot(FAN_IN_TO, `j:${s.jobId}`, (slot) => this.fanInOrFail(s.jobId, 'notify', slot));
    }
  }

  /** Policy `any`: a variant gave up; the job goes on with the others, or fails when none succeeded. */
  private async fanInOrFail(jobId: string, trigger: ClaimTrigger, slot: Slot): Promise<boolean> {
    if (await this.tryFanIn(jobId, trigger, slot)) return true;
    const reason = await failJobIfNoVariantSucceeded(this.pool, jobId);
    if (reason) {
      this.log.warn({ job_id: jobId, reason }, 'job failed');
      this.emit('job:failed', { jobId, reason });
      this.finished(jobId, 'failed');
    }
    return false;
  }

  /**
   * This instance made (a give-up) or received (the final step's answer) a
   * job's final transition: 'job:finished' with the job's duration, read from
   * the row (one query, only when someone listens: the metrics do).
   */
  private finished(jobId: string, status: 'done' | 'failed'): void {
    if (this.listenerCount('job:finished') === 0) return;
    void this.track(
      this.pool
        .query<{ status: string; seconds: number | null }>(
          `SELECT status,
                  extract(epoch FROM (CASE WHEN status = 'done' THEN COALESCE(completed_at, updated_at)
                                           ELSE updated_at END) - created_at)::float8 AS seconds
             FROM jobs WHERE job_id = $1`,
          [jobId],
        )
        .then(({ rows }) => {
          const r = rows[0];
          if (!r || r.status !== status || r.seconds === null) return;
          this.emit('job:finished', { jobId, status, durationSeconds: Math.max(0, r.seconds) });
        })
        .catch((err: unknown) =>
          this.log.debug({ job_id: jobId, err: (err as Error).message }, 'job duration not read'),
        ),
    );
  }

  // ---------------------------------------------------------------- recovery

  /**
   * One recovery pass (startup, after a reconnect, after the database came
   * back, after a circuit closed, the job_state_changed handler scoped to one
   * job, the periodic schedule): every transition that should have happened,
   * claimed through the same guarded functions as live dispatch.
   */
  recover(scope: SweepScope = {}): Promise<RecoverResult> {
    if (this.closing) return Promise.resolve({ scanned: 0, recovered: 0 });
    const p = this.recovery.sweep(scope).catch((err: unknown) => {
      this.durable.noteError(err);
      throw err;
    });
    void this.track(p); // close() waits for a sweep in progress
    return p;
  }

  /**
   * A sweep, resolving once it is finished or first has to wait for a free
   * slot: the work it found is then in motion, and the rest follows as slots
   * free. (A host's ready() waits for this, not for the whole backlog.)
   */
  recoverUntilBusy(scope: SweepScope = {}): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = () => {
        if (!settled) {
          settled = true;
          resolve();
        }
      };
      this.recover({ ...scope, onBusy: done }).then(done, (err: unknown) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
      });
    });
  }

  /** Carries out one decision of a sweep. True when it moved the row. */
  private async act(row: RecoveryRow, d: Decision, slot: Slot | null): Promise<boolean> {
    const s: StepSubject = { jobId: row.jobId, jobVariantsId: row.jobVariantsId, step: row.step };
    const def = this.graph[row.step];
    const give = (claimed: ClaimedStep | null): boolean => {
      if (!slot) return claimed !== null;
      if (claimed) this.dispatch(claimed, slot);
      else slot.release();
      return claimed !== null;
    };
    try {
      switch (d.kind) {
        case 'claim-next': {
          const trigger: ClaimTrigger = row.dispatchRequested ? 'manual' : 'recovery';
          const claimed = row.jobVariantsId
            ? await claimVariant(
                this.pool,
                {
                  jobVariantsId: row.jobVariantsId,
                  prev: row.step,
                  trigger,
                  instanceId: this.instanceId,
                },
                this.claimSql,
              )
            : await claimJobNext(
                this.pool,
                { jobId: row.jobId, prev: row.step, trigger, instanceId: this.instanceId },
                this.claimSql,
              );
          return give(claimed);
        }
        case 'fan-in':
          if (!slot) return false;
          return (await this.tryFanIn(row.jobId, 'recovery', slot)) !== null;
        case 'retry':
          return give(
            await retryStep(this.pool, {
              ...s,
              attempt: row.attempt,
              maxAttempts: def.retry.maxAttempts,
              instanceId: this.instanceId,
            }),
          );
        case 'give-up': {
          slot?.release();
          if (d.timedOut) {
            const timed = await timeOutStep(this.pool, {
              ...s,
              attempt: row.attempt,
              olderThanMs: def.rescueAfterMs,
              maxAttempts: def.retry.maxAttempts,
            });
            if (!timed) return false;
            this.counters.failures++;
          }
          const gave = await giveUp(this.pool, {
            ...s,
            attempt: row.attempt,
            maxAttempts: def.retry.maxAttempts,
            policy: this.fanInPolicy,
          });
          if (gave) await this.onGaveUp(s, row.attempt, gave);
          return gave !== null || d.timedOut;
        }
        case 'rescue': {
          const claimed = await rescueStep(this.pool, {
            ...s,
            attempt: row.attempt,
            olderThanMs: def.rescueAfterMs,
            maxAttempts: def.retry.maxAttempts,
            instanceId: this.instanceId,
          });
          if (claimed)
            this.log.warn(
              { ...fields(claimed), previous_attempt: row.attempt, age_ms: row.ageMs },
              'stuck step rescued',
            );
          return give(claimed);
        }
        case 're-dispatch': {
          const claimed = await redispatchStep(this.pool, {
            ...s,
            attempt: row.attempt,
            claimedBy: row.claimedBy,
            instanceId: this.instanceId,
            trigger: d.why === 'requested' ? 'manual' : 'redispatch',
          });
          if (claimed && d.why !== 'requested') {
            this.log.info(
              { ...fields(claimed), previous_attempt: row.attempt, claimed_by: row.claimedBy ?? undefined, why: d.why },
              'queued step re-dispatched',
            );
          }
          return give(claimed);
        }
        case 'resend-own': {
          if (!slot) return false;
          if (this.flights.has(row, row.attempt)) {
            slot.release();
            return false;
          }
          this.counters.resendsOwn++;
          this.log.info(
            {
              job_id: row.jobId,
              job_variants_id: row.jobVariantsId ?? undefined,
              step: row.step,
              attempt: row.attempt,
            },
            'own queued step sent again (same attempt)',
          );
          this.flights.start(
            {
              jobId: row.jobId,
              tenantId: row.tenantId,
              jobVariantsId: row.jobVariantsId,
              step: row.step,
              attempt: row.attempt,
              attemptBase: row.attemptBase,
              runId: row.runId ?? '',
              trigger: 'recovery',
            },
            slot,
          );
          return true;
        }
        default:
          slot?.release();
          return false;
      }
    } catch (err) {
      slot?.release();
      this.durable.noteError(err);
      throw err;
    }
  }

  /** Recovery: the next step of `done` variants of one step, in one statement, one slot each. */
  private async claimNextBatch(prev: Step, rows: RecoveryRow[], slots: Slot[]): Promise<number> {
    let claimed: ClaimedStep[];
    try {
      claimed = await claimVariants(
        this.pool,
        {
          items: rows.map((r) => ({ jobVariantsId: r.jobVariantsId as string, prev })),
          trigger: 'recovery',
          instanceId: this.instanceId,
        },
        this.claimSql,
      );
    } catch (err) {
      this.durable.noteError(err);
      throw err;
    }
    for (let i = 0; i < slots.length; i++) {
      const c = claimed[i];
      const slot = slots[i] as Slot;
      if (c) this.dispatch(c, slot);
      else slot.release();
    }
    return claimed.length;
  }

  private async recoverFanIn(jobId: string, hasSuccess: boolean, slot: Slot | null): Promise<boolean> {
    if (hasSuccess && slot) return (await this.tryFanIn(jobId, 'recovery', slot)) !== null;
    slot?.release();
    if (this.fanInPolicy !== 'any') return false;
    const reason = await failJobIfNoVariantSucceeded(this.pool, jobId);
    if (reason) {
      this.emit('job:failed', { jobId, reason });
      this.finished(jobId, 'failed');
    }
    return reason !== null;
  }

  // ---------------------------------------------------------------- circuits

  private onHalfOpen(b: CircuitBreaker): void {
    if (this.closing) return;
    // The probe: our oldest waiting row for that URL, or one new claim.
    if (this.flights.halfOpen(b)) return;
    this.capacity.pump();
    if (b.probeAvailable) void this.recover();
  }

  private onCircuitClosed(b: CircuitBreaker, openMs: number): void {
    if (this.closing) return;
    this.flights.wakeAll();
    this.capacity.pump();
    const info = this.circuits.info(b);
    // The waiting work is swept at once, whatever the recovery window; the sweep goes on as slots free.
    void this.recover({ sinceMs: openMs + 60_000 }).then(
      (r) =>
        this.log.info(
          { base_url: info.baseUrl, route: info.route ?? undefined, open_ms: openMs, swept: r.recovered },
          'stage circuit closed',
        ),
      () => {},
    );
  }

  // ---------------------------------------------------------------- lifecycle

  private track<T>(p: Promise<T>): Promise<T> {
    const tracked = p.catch((err: unknown) => {
      this.log.error({ err: (err as Error)?.message ?? String(err) }, 'listener error');
      return undefined as T;
    });
    this.work.add(tracked);
    void tracked.finally(() => this.work.delete(tracked));
    return tracked;
  }

  /** Resolves when no claim, flight or sweep is in progress (tests, close). */
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
   * Stops new claims; flights waiting (for a circuit, a Retry-After, a slot)
   * end at once, calls already at a stage may finish within `graceMs`, then
   * they are aborted. Their rows stay `queued` and claimed by this instance;
   * once the host removes its registration, peers re-dispatch them. Safe to
   * call twice.
   */
  async close(opts: CloseOptions = {}): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.ownership.clear();
    this.capacity.clear();
    this.flights.stopWaiting();
    const finished = await this.idle(opts.graceMs ?? 10_000);
    if (!finished) {
      this.log.warn({ in_flight: this.flights.size }, 'close: grace period over, aborting stage calls');
      this.flights.close();
      this.client.abortAll();
      await this.idle(5_000);
    }
    await this.client.close();
    this.circuits.dispose();
    await this.durable.close();
    await this.runLog.flush({ final: true });
    this.closed = true;
    await sleep(0);
  }
}

function subjectFields(s: StepSubject) {
  return { job_id: s.jobId, job_variants_id: s.jobVariantsId ?? undefined, step: s.step };
}

function subject(c: ClaimedStep): StepSubject {
  return { jobId: c.jobId, jobVariantsId: c.jobVariantsId, step: c.step };
}

function describe(c: ClaimedStep): string {
  return `${c.jobVariantsId ? `variant ${c.jobVariantsId}` : `job ${c.jobId}`} ${c.step} attempt ${c.attempt}`;
}

function event(c: ClaimedStep): StepEvent {
  return { jobId: c.jobId, jobVariantsId: c.jobVariantsId, step: c.step, attempt: c.attempt };
}

export function createPipelineEngine(opts: PipelineEngineOptions): PipelineEngine {
  return new PipelineEngine(opts);
}

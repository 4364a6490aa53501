/**
 * @feedlyai/listener-plugin: LISTEN/NOTIFY driven, exactly-once triggering of
 * the pipeline on a Fastify 5 host's lifecycle. Starts on onReady, stops on
 * onClose; the claims, fan-in, retries and recovery live in pipeline-core's
 * engine.
 */
import {
  createPipelineEngine,
  deregisterInstance,
  type EngineEvents,
  type EngineLogger,
  type EngineStatus,
  type PipelineEngine,
  type RecoverResult,
  redactUrl,
} from '@feedlyai/pipeline-core';
import fastifySchedule from '@fastify/schedule';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import pg from 'pg';
import { AsyncTask, SimpleIntervalJob } from 'toad-scheduler';
import { type JobStateListenerOptions, type ResolvedConfig, resolveConfig } from './config.js';
import { APPLICATION_NAME, JOB_CHANNEL, ListenConnection, VARIANT_CHANNEL } from './listen-connection.js';
import { registerMetrics } from './metrics.js';

export interface JobStateListenerStatus extends Partial<EngineStatus> {
  enabled: boolean;
  connected: boolean;
  lastNotificationAt: Date | null;
  reconnects: number;
}

export interface JobStateListener {
  status(): JobStateListenerStatus;
  /** Runs one recovery sweep now (all jobs, or one). */
  recover(scope?: { jobId?: string }): Promise<RecoverResult>;
  on<E extends keyof EngineEvents>(event: E, listener: (...args: EngineEvents[E]) => void): JobStateListener;
  off<E extends keyof EngineEvents>(event: E, listener: (...args: EngineEvents[E]) => void): JobStateListener;
}

declare module 'fastify' {
  interface FastifyInstance {
    jobStateListener: JobStateListener;
  }
}

const RECOVERY_JOB_ID = 'feedlyai-job-state-listener-recovery';

function disabledListener(): JobStateListener {
  const self: JobStateListener = {
    status: () => ({ enabled: false, connected: false, lastNotificationAt: null, reconnects: 0 }),
    recover: async () => ({ scanned: 0, recovered: 0 }),
    on: () => self,
    off: () => self,
  };
  return self;
}

function clientConfigFrom(cfg: ResolvedConfig, hostPool: pg.Pool | undefined): pg.ClientConfig {
  if (cfg.connectionString) return { connectionString: cfg.connectionString };
  if (hostPool) {
    const { max: _max, idleTimeoutMillis: _i, ...rest } = (hostPool as unknown as { options: pg.PoolConfig }).options;
    return rest as pg.ClientConfig;
  }
  throw new Error(
    '@feedlyai/listener-plugin: no database configured: set DATABASE_URL (or DB_HOST...), the connectionString option, or register @fastify/postgres first',
  );
}

/** Checks out every idle connection of the pool and destroys it (the next queries connect afresh). */
async function dropIdleConnections(pool: pg.Pool): Promise<void> {
  const clients: pg.PoolClient[] = [];
  try {
    // An idle client is handed out without a round trip; stop at the first one that is not idle.
    for (let n = pool.idleCount; n > 0 && pool.idleCount > 0; n--) clients.push(await pool.connect());
  } catch {
    // the pool is closing, or a fresh connection failed: nothing more to drop
  } finally {
    for (const c of clients) c.release(true);
  }
}

const plugin: FastifyPluginAsync<JobStateListenerOptions> = async (fastify, options) => {
  if (fastify.hasDecorator('jobStateListener')) {
    throw new Error('@feedlyai/listener-plugin is already registered on this instance');
  }
  const cfg = resolveConfig(options);
  const log = fastify.log.child({ component: 'job_state_listener' }) as unknown as EngineLogger;
  for (const d of cfg.deprecations) log.warn({ deprecated: true }, `@feedlyai/listener-plugin: ${d}`);

  if (!cfg.enabled) {
    fastify.decorate('jobStateListener', disabledListener());
    log.info({ ENABLE_JOB_STATE_LISTENER: false }, 'job state listener disabled: no connection opened');
    return;
  }

  const hostPool = fastify.hasDecorator('pg') ? (fastify as unknown as { pg: { pool: pg.Pool } }).pg.pool : undefined;
  const clientConfig = clientConfigFrom(cfg, cfg.connectionString ? undefined : hostPool);
  const ownPool = hostPool
    ? null
    : new pg.Pool({
        ...clientConfig,
        max: cfg.poolMax,
        application_name: `${APPLICATION_NAME}_dispatch`,
        keepAlive: true,
        // A query on a connection that died silently must not hold a pool slot forever.
        query_timeout: 60_000,
      });
  ownPool?.on('error', (err) => log.warn({ err: err.message }, 'listener error: idle pool connection failed'));
  const pool = hostPool ?? (ownPool as pg.Pool);

  let engine: PipelineEngine;
  try {
    engine = createPipelineEngine({
      pool,
      stageApiUrl: cfg.stageApiUrl,
      stageApiToken: cfg.stageApiToken,
      instanceId: cfg.instanceId,
      logger: log,
      fanInPolicy: cfg.fanInPolicy,
      recoveryWindowHours: cfg.recoveryWindowHours,
      maxInFlight: cfg.maxInFlight,
      stepOverrides: cfg.stepOverrides,
      claimDelayMs: cfg.claimDelayMs,
      deadAfterMs: cfg.deadAfterMs,
    });
  } catch (err) {
    await ownPool?.end().catch(() => {});
    throw new Error(`@feedlyai/listener-plugin: invalid options: ${(err as Error).message}`);
  }

  const runRecovery = (why: string): Promise<RecoverResult | undefined> =>
    engine.recover(why === 'periodic' ? {} : { fresh: true }).catch((err: unknown) => {
      log.error({ err: (err as Error).message, why }, 'listener error: recovery failed');
      return undefined;
    });

  const connection = new ListenConnection({
    clientConfig,
    log,
    reconnectDelayMs: cfg.reconnectDelayMs,
    maxReconnectDelayMs: cfg.maxReconnectDelayMs,
    livenessIntervalMs: cfg.livenessIntervalMs,
    livenessTimeoutMs: cfg.livenessTimeoutMs,
    onNotification: (channel, payload) => {
      const p =
        channel === VARIANT_CHANNEL
          ? engine.handleVariantNotification(payload)
          : channel === JOB_CHANNEL
            ? engine.handleJobNotification(payload)
            : null;
      p?.catch((err: unknown) => log.error({ err: (err as Error).message, channel }, 'listener error'));
    },
    // The pool's idle connections share the LISTEN connection's network path: a path that died
    // silently would leave them hanging until query_timeout, so the plugin's own pool drops them.
    onLost: () => {
      void engine.setListenerConnected(false);
      if (ownPool) void dropIdleConnections(ownPool);
    },
    instanceId: engine.instanceId,
    deadAfterMs: cfg.deadAfterMs,
    onRegistered: () => engine.setListenerConnected(true),
    onInstances: (o) => engine.onInstances(o),
    onPeers: (self, pids) => engine.setPeers(String(self), pids.map(String)),
    // Awaited: `fastify.ready()` resolves once the startup sweep has run, or has put as much of
    // the work it found in motion as there are slots (a large backlog follows as slots free,
    // instead of holding the host's boot).
    onConnected: async (reconnect) => {
      const why = reconnect ? 'reconnect sweep' : 'startup sweep';
      await engine.recoverUntilBusy({ fresh: true }).catch((err: unknown) => {
        log.error({ err: (err as Error).message, why }, 'listener error: recovery failed');
      });
    },
  });

  if (!fastify.hasDecorator('scheduler')) await fastify.register(fastifySchedule);

  let firstRecoveryTimer: NodeJS.Timeout | null = null;
  let started = false;

  const api: JobStateListener = {
    status: () => {
      const s = engine.status();
      return { ...s, enabled: true, connected: connection.isConnected, reconnects: connection.reconnects };
    },
    recover: (scope) => engine.recover({ ...scope, fresh: true }),
    on: (event, listener) => {
      (engine as unknown as NodeJS.EventEmitter).on(event, listener as (...a: unknown[]) => void);
      return api;
    },
    off: (event, listener) => {
      (engine as unknown as NodeJS.EventEmitter).off(event, listener as (...a: unknown[]) => void);
      return api;
    },
  };
  fastify.decorate('jobStateListener', api);

  if (cfg.metricsRegistry) {
    let prom: typeof import('prom-client');
    try {
      prom = await import('prom-client');
    } catch {
      throw new Error('@feedlyai/listener-plugin: the metricsRegistry option needs the prom-client package installed');
    }
    registerMetrics(prom, cfg.metricsRegistry, api);
  }

  fastify.addHook('onReady', async () => {
    started = true;
    log.info(
      {
        instance_id: engine.instanceId,
        stage_api_url: cfg.stageApiUrl,
        database: cfg.connectionString ? redactUrl(cfg.connectionString) : 'host @fastify/postgres pool',
        fan_in_policy: cfg.fanInPolicy,
        recovery_interval_ms: cfg.recoveryIntervalMs,
        recovery_window_hours: cfg.recoveryWindowHours,
        dead_after_ms: cfg.deadAfterMs,
        max_in_flight: cfg.maxInFlight,
      },
      'job state listener starting',
    );
    await connection.start();
    // Periodic recovery; the first run at a random moment within the interval
    // so that many instances started together do not sweep together.
    const scheduler = (fastify as FastifyInstance).scheduler;
    firstRecoveryTimer = setTimeout(
      () => {
        firstRecoveryTimer = null;
        void runRecovery('periodic');
        const task = new AsyncTask(
          'job-state-listener-recovery',
          async () => {
            await runRecovery('periodic');
          },
          (err) => log.error({ err: err.message }, 'listener error: recovery failed'),
        );
        if (!scheduler.existsById(RECOVERY_JOB_ID)) {
          scheduler.addSimpleIntervalJob(
            new SimpleIntervalJob({ milliseconds: cfg.recoveryIntervalMs }, task, {
              id: RECOVERY_JOB_ID,
              preventOverrun: true,
            }),
          );
        }
      },
      Math.round(Math.random() * cfg.recoveryIntervalMs),
    );
  });

  fastify.addHook('onClose', async (instance) => {
    if (firstRecoveryTimer) clearTimeout(firstRecoveryTimer);
    firstRecoveryTimer = null;
    const scheduler = (instance as FastifyInstance).scheduler;
    if (scheduler?.existsById(RECOVERY_JOB_ID)) scheduler.removeById(RECOVERY_JOB_ID);
    await connection.stop();
    await engine.close({ graceMs: cfg.closeGraceMs });
    // A clean stop: peers re-dispatch what this instance leaves queued at once, not after deadAfterMs.
    if (started) {
      await deregisterInstance(pool, engine.instanceId).catch((err: unknown) =>
        log.warn({ err: (err as Error).message }, 'could not remove the instance registration'),
      );
    }
    if (ownPool) await ownPool.end().catch(() => {});
    if (started) log.info({ instance_id: engine.instanceId }, 'job state listener stopped');
  });
};

/** The Fastify plugin (default export and `jobStateListener`). */
export const jobStateListener = fp(plugin, {
  fastify: '5.x',
  name: '@feedlyai/listener-plugin',
});

export default jobStateListener;

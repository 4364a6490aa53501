/**
 * @feedlyai/listener-plugin: LISTEN/NOTIFY driven, exactly-once triggering of
 * the pipeline on a Fastify 5 host's lifecycle. Starts on onReady, stops on
 * preClose (before the host's own plugins, such as @fastify/postgres, close
 * their pools); the claims, fan-in, retries and recovery live in
 * pipeline-core's engine. It decorates the host with `jobStateListener` only,
 * and finds its database when the host is ready, so it registers in any order
 * with the host's other plugins (docs/integration.md).
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
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import pg from 'pg';
import {
  isPoolLike,
  type JobStateListenerOptions,
  type PoolLike,
  type ResolvedConfig,
  resolveConfig,
} from './config.js';
import {
  APPLICATION_NAME,
  JOB_CHANNEL,
  ListenConnection,
  type ListenSource,
  VARIANT_CHANNEL,
} from './listen-connection.js';
import { registerMetrics } from './metrics.js';

export interface JobStateListenerStatus extends Partial<EngineStatus> {
  enabled: boolean;
  connected: boolean;
  lastNotificationAt: Date | null;
  reconnects: number;
}

/**
 * What a subscriber of the LISTEN connection's notifications is told
 * (docs/integration.md, "Sharing the notifications"): every notification as
 * received, and each reconnect (notifications may have been missed while the
 * connection was down).
 */
export interface NotificationSubscriber {
  notification(channel: string, payload: string | undefined): void;
  reconnected?(): void;
}

export interface JobStateListener {
  status(): JobStateListenerStatus;
  /**
   * Receives the notifications of the listener's own LISTEN connection (both
   * channels), so that another part of the same process (the dashboard) needs
   * no connection of its own. Returns the unsubscribe function. A disabled
   * listener has no connection: nothing is ever delivered (check `status().enabled`).
   */
  subscribeNotifications(subscriber: NotificationSubscriber): () => void;
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

function disabledListener(): JobStateListener {
  const self: JobStateListener = {
    status: () => ({ enabled: false, connected: false, lastNotificationAt: null, reconnects: 0 }),
    recover: async () => ({ scanned: 0, recovered: 0 }),
    subscribeNotifications: () => () => {},
    on: () => self,
    off: () => self,
  };
  return self;
}

/** Where the plugin's database is: a pool (the host's) or a connection string (its own pool). */
type Database = { pool: PoolLike; label: string } | { connectionString: string; label: string };

/**
 * Finds the database when the host is ready (docs/integration.md): the `pool` option, else the
 * `pgName` registration of @fastify/postgres, else the `connectionString` option, else the host's
 * default @fastify/postgres pool, else DATABASE_URL / DB_*. Looked up at onReady, so
 * @fastify/postgres may be registered before or after this plugin.
 */
function findDatabase(fastify: FastifyInstance, cfg: ResolvedConfig): Database {
  if (cfg.pool) return { pool: cfg.pool, label: 'the pool option' };
  const pgDecorator = fastify.hasDecorator('pg')
    ? (fastify as unknown as { pg: Record<string, unknown> }).pg
    : undefined;
  if (cfg.pgName !== undefined) {
    const named = (pgDecorator?.[cfg.pgName] as { pool?: unknown } | undefined)?.pool;
    if (!isPoolLike(named)) {
      throw new Error(
        `@feedlyai/listener-plugin: option pgName: no @fastify/postgres registration named '${cfg.pgName}' (register @fastify/postgres with { name: '${cfg.pgName}' })`,
      );
    }
    return { pool: named, label: `host @fastify/postgres pool '${cfg.pgName}'` };
  }
  if (cfg.connectionString && cfg.connectionStringFromOption) {
    return { connectionString: cfg.connectionString, label: redactUrl(cfg.connectionString) };
  }
  const hostDefault = pgDecorator?.pool;
  if (isPoolLike(hostDefault)) return { pool: hostDefault, label: 'host @fastify/postgres pool' };
  if (cfg.connectionString) return { connectionString: cfg.connectionString, label: redactUrl(cfg.connectionString) };
  throw new Error(
    '@feedlyai/listener-plugin: no database configured: set DATABASE_URL (or DB_HOST...), the connectionString or pool option, or register @fastify/postgres',
  );
}

/**
 * The engine is made at registration (so that invalid options fail there), before the host's
 * pool may exist: it talks to whichever pool onReady binds, through pg.Pool's public connect()
 * and query().
 */
function boundPool(get: () => PoolLike): pg.Pool {
  const bound: Pick<pg.Pool, 'connect' | 'query'> = {
    connect: (() => get().connect()) as pg.Pool['connect'],
    query: ((...args: Parameters<pg.Pool['query']>) =>
      (get().query as (...a: unknown[]) => unknown)(...args)) as pg.Pool['query'],
  };
  return bound as pg.Pool;
}

/** Held clients' error listener: see dropIdleConnections. */
const ignoreError = () => {};

/**
 * Checks out every idle connection of the pool and destroys it (the next queries connect afresh).
 * Exported for its test only. A checked-out client has no listener of the pool's, and this runs
 * when the LISTEN connection was lost, often because the server is going away: the held clients
 * are about to receive its termination, which, on a client without an 'error' listener, would
 * end the process.
 */
export async function dropIdleConnections(pool: Pick<pg.Pool, 'connect' | 'idleCount'>): Promise<void> {
  const clients: pg.PoolClient[] = [];
  try {
    // An idle client is handed out without a round trip; stop at the first one that is not idle.
    for (let n = pool.idleCount; n > 0 && pool.idleCount > 0; n--) {
      const client = await pool.connect();
      client.on('error', ignoreError);
      clients.push(client);
    }
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

  // Bound at onReady (findDatabase); until then nothing talks to the database.
  let pool: PoolLike | null = null;
  let ownPool: pg.Pool | null = null;
  const enginePool = boundPool(() => {
    if (!pool) throw new Error('@feedlyai/listener-plugin: not started yet (the host is not ready)');
    return pool;
  });

  let engine: PipelineEngine;
  try {
    engine = createPipelineEngine({
      pool: enginePool,
      stageApiUrl: cfg.stageApiUrl,
      stageUrls: cfg.stageUrls,
      maxInFlightPerUrl: cfg.maxInFlightPerUrl,
      stageApiToken: cfg.stageApiToken,
      instanceId: cfg.instanceId,
      logger: log,
      fanInPolicy: cfg.fanInPolicy,
      recoveryWindowHours: cfg.recoveryWindowHours,
      maxInFlight: cfg.maxInFlight,
      stepOverrides: cfg.stepOverrides,
      claimDelayMs: cfg.claimDelayMs,
      preparedStatements: cfg.preparedStatements,
      deadAfterMs: cfg.deadAfterMs,
    });
  } catch (err) {
    throw new Error(`@feedlyai/listener-plugin: invalid options: ${(err as Error).message}`);
  }

  const runRecovery = (why: string): Promise<RecoverResult | undefined> =>
    engine.recover(why === 'periodic' ? {} : { fresh: true }).catch((err: unknown) => {
      log.error({ err: (err as Error).message, why }, 'listener error: recovery failed');
      return undefined;
    });

  const subscribers = new Set<NotificationSubscriber>();
  /** A subscriber's exception is its own: logged, never the listener's. */
  const tell = (fn: (s: NotificationSubscriber) => void) => {
    for (const s of subscribers) {
      try {
        fn(s);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'notification subscriber failed');
      }
    }
  };

  const listenConnection = (source: ListenSource) =>
    new ListenConnection({
      source,
      log,
      reconnectDelayMs: cfg.reconnectDelayMs,
      maxReconnectDelayMs: cfg.maxReconnectDelayMs,
      livenessIntervalMs: cfg.livenessIntervalMs,
      livenessTimeoutMs: cfg.livenessTimeoutMs,
      onNotification: (channel, payload) => {
        if (subscribers.size > 0) tell((s) => s.notification(channel, payload));
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
        if (reconnect) tell((s) => s.reconnected?.());
        const why = reconnect ? 'reconnect sweep' : 'startup sweep';
        await engine.recoverUntilBusy({ fresh: true }).catch((err: unknown) => {
          log.error({ err: (err as Error).message, why }, 'listener error: recovery failed');
        });
      },
    });

  let connection: ListenConnection | null = null;
  // The periodic recovery: a plain timer of the plugin's own (the host's @fastify/schedule, if
  // any, is left alone), re-armed after each run so that runs never overlap.
  let recoveryTimer: NodeJS.Timeout | null = null;
  let started = false;
  let stopped = false;

  const api: JobStateListener = {
    status: () => {
      const s = engine.status();
      return {
        ...s,
        enabled: true,
        connected: connection?.isConnected ?? false,
        reconnects: connection?.reconnects ?? 0,
      };
    },
    recover: (scope) => engine.recover({ ...scope, fresh: true }),
    subscribeNotifications: (subscriber) => {
      subscribers.add(subscriber);
      return () => {
        subscribers.delete(subscriber);
      };
    },
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

  const scheduleRecovery = (delayMs: number) => {
    recoveryTimer = setTimeout(() => {
      recoveryTimer = null;
      void runRecovery('periodic').finally(() => {
        if (!stopped) scheduleRecovery(cfg.recoveryIntervalMs);
      });
    }, delayMs);
  };

  fastify.addHook('onReady', async () => {
    if (stopped) return;
    const db = findDatabase(fastify as FastifyInstance, cfg);
    let source: ListenSource;
    if ('pool' in db) {
      pool = db.pool;
      source = { pool: db.pool };
    } else {
      ownPool = new pg.Pool({
        connectionString: db.connectionString,
        max: cfg.poolMax,
        application_name: `${APPLICATION_NAME}_dispatch`,
        keepAlive: true,
        // A query on a connection that died silently must not hold a pool slot forever.
        query_timeout: 60_000,
      });
      ownPool.on('error', (err) => log.warn({ err: err.message }, 'listener error: idle pool connection failed'));
      pool = ownPool;
      source = { connectionString: db.connectionString };
    }
    connection = listenConnection(source);
    started = true;
    log.info(
      {
        instance_id: engine.instanceId,
        stage_api_url: cfg.stageApiUrl,
        database: db.label,
        fan_in_policy: cfg.fanInPolicy,
        recovery_interval_ms: cfg.recoveryIntervalMs,
        recovery_window_hours: cfg.recoveryWindowHours,
        dead_after_ms: cfg.deadAfterMs,
        max_in_flight: cfg.maxInFlight,
      },
      'job state listener starting',
    );
    await connection.start();
    // The first periodic run at a random moment within the interval, so that many
    // instances started together do not sweep together.
    if (!stopped) scheduleRecovery(Math.round(Math.random() * cfg.recoveryIntervalMs));
  });

  // preClose, not onClose: the host's own plugins close in their onClose hooks, and a host's
  // @fastify/postgres registered after this plugin would otherwise end its pool (waiting for
  // the LISTEN client checked out of it) before this plugin let go of it.
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (recoveryTimer) clearTimeout(recoveryTimer);
    recoveryTimer = null;
    await connection?.stop();
    await engine.close({ graceMs: cfg.closeGraceMs });
    // A clean stop: peers re-dispatch what this instance leaves queued at once, not after deadAfterMs.
    if (started) {
      await deregisterInstance(enginePool, engine.instanceId).catch((err: unknown) =>
        log.warn({ err: (err as Error).message }, 'could not remove the instance registration'),
      );
    }
    if (ownPool) await ownPool.end().catch(() => {});
    if (started) log.info({ instance_id: engine.instanceId }, 'job state listener stopped');
  };
  fastify.addHook('preClose', stop);
  // A host that fails to boot closes without preClose.
  fastify.addHook('onClose', stop);
};

/** The Fastify plugin (default export and `jobStateListener`). */
export const jobStateListener = fp(plugin, {
  fastify: '5.x',
  name: '@feedlyai/listener-plugin',
});

export default jobStateListener;

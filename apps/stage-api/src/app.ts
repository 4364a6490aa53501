/**
 * buildApp(options): the stage server, every route and plugin registered,
 * not listening (server.ts listens). Options override the environment.
 */
import jobStateListener, { type JobStateListenerOptions } from '@feedlyai/listener-plugin';
import { createStorage } from '@feedlyai/storage';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import pg from 'pg';
import { stepForRoute } from '@feedlyai/pipeline-core';
import { createBackends } from './clients/models.js';
import { type ConfigOverrides, loadConfig, type Resource, type StageConfig } from './config.js';
import { createMetrics, type ListenerStatusSource } from './metrics.js';
import authPlugin from './plugins/auth.js';
import { assetRoutes } from './routes/assets.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { stageRoutes } from './routes/stages.js';
import { STAGES } from './stages/definitions.js';
import { AdmissionQueues } from './stages/limiter.js';
import { tracingPlugin } from './tracing.js';
import type { StageContext, StageHooks } from './stages/runner.js';
import { Warmup } from './stages/warmup.js';
import { createCpuRunner } from './workers/pool.js';

export { ConfigError, loadConfig, type StageConfig } from './config.js';
export { STAGES } from './stages/definitions.js';

export interface BuildAppOptions extends ConfigOverrides {
  /** Environment to read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Use this pool instead of opening one (the app does not close it). */
  pool?: pg.Pool;
  /**
   * Host @feedlyai/listener-plugin (default true; the plugin itself honours
   * ENABLE_JOB_STATE_LISTENER). An object is passed to the plugin as options.
   */
  listener?: boolean | JobStateListenerOptions;
  logger?: FastifyServerOptions['logger'];
  /** Test hooks inside a stage run. */
  hooks?: StageHooks;
  /**
   * Warm the models and workers before the server reports ready (in onReady;
   * docs/stage-api.md, "Warm-up"). Default false here, so that tests boot
   * fast; server.ts and the demo turn it on. /healthz says whether it finished.
   */
  warm?: boolean;
  /** Upper bound of the warm-up, ms (default 60,000): past it, what is not warm loads on first use. */
  warmTimeoutMs?: number;
  /**
   * Calls the hosted listener sends to this very server at once (its
   * maxInFlightPerUrl for this server's URL, unless the listener options set
   * one). Default: what this server can run at once (stageSlots below;
   * docs/stage-api.md, "Admission"); false: no such limit.
   */
  hostedInFlight?: number | false;
}

/**
 * What this server can run at once: for each resource its stages use, its
 * concurrency, bounded by the threads that do the work for the two local
 * ones (the renderer by the CPU pool's threads, OCR by the tesseract
 * workers), summed. Calls beyond it would only wait in a queue here.
 */
export function stageSlots(ctx: StageContext): number {
  const used = new Set(Object.values(STAGES).flatMap((d) => d.resources(ctx)));
  const c = ctx.config.concurrency;
  const slots = (r: Resource) =>
    r === 'render'
      ? Math.min(c.render, Math.max(1, ctx.cpu.threads))
      : r === 'ocr'
        ? Math.min(c.ocr, ctx.config.ocrWorkers)
        : c[r];
  return Math.max(
    1,
    [...used].reduce((n, r) => n + slots(r), 0),
  );
}

declare module 'fastify' {
  interface FastifyInstance {
    stageContext: StageContext;
  }
}

/** Default upper bound of the warm-up at boot. */
const WARM_TIMEOUT_MS = 60_000;

const CONFIG_KEYS: ReadonlyArray<keyof StageConfig> = [
  'databaseUrl',
  'storageDir',
  'token',
  'host',
  'port',
  'bodyLimit',
  'vlm',
  'llm',
  'yoloModelPath',
  'concurrency',
  'queue',
  'queueMaxWaitMs',
  'queueMaxWaitMsOf',
  'retryAfterSeconds',
  'cpuWorkers',
  'ocrWorkers',
  'imageFetch',
  'maxImageBytes',
];

function hasListener(app: FastifyInstance): ListenerStatusSource | null {
  const l = (app as unknown as { jobStateListener?: ListenerStatusSource }).jobStateListener;
  return l && typeof l.status === 'function' ? l : null;
}

export async function buildApp(options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const overrides: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) if (options[k] !== undefined) overrides[k] = options[k];
  if (options.pool && overrides.databaseUrl === undefined) overrides.databaseUrl = 'postgres://provided-pool';
  const config = loadConfig(overrides as ConfigOverrides, options.env ?? process.env);

  const app = Fastify({
    logger: options.logger ?? { level: process.env.LOG_LEVEL ?? 'info' },
    bodyLimit: config.bodyLimit,
    // The dispatcher's synchronous calls can take minutes; the dispatcher owns the timeout.
    requestTimeout: 0,
    // The warm-up runs in onReady, which Fastify bounds by this (default 10 s).
    ...(options.warm ? { pluginTimeout: (options.warmTimeoutMs ?? WARM_TIMEOUT_MS) + 10_000 } : {}),
  }).withTypeProvider<TypeBoxTypeProvider>();

  const ownsPool = !options.pool;
  const pool =
    options.pool ?? new pg.Pool({ connectionString: config.databaseUrl, max: 10, application_name: 'stage_api' });
  pool.on('error', (err) => app.log.error({ err: err.message }, 'PostgreSQL pool error'));
  const storage = await createStorage({ root: config.storageDir });
  const metrics = createMetrics();
  const backends = createBackends(config);
  const cpu = createCpuRunner(config.cpuWorkers);
  const limiter = new AdmissionQueues(
    {
      concurrency: config.concurrency,
      queue: config.queue,
      maxWaitMs: Object.fromEntries(
        Object.entries(config.queueMaxWaitMsOf).map(([r, v]) => [r, v ?? config.queueMaxWaitMs]),
      ) as Record<keyof StageConfig['queue'], number | null>,
      retryAfterCapS: config.retryAfterSeconds,
    },
    metrics.admission,
  );
  metrics.watchAdmission(() => limiter.snapshot());
  const warmup = new Warmup(options.warm === true);
  const ctx: StageContext = {
    config,
    pool,
    storage,
    backends,
    cpu,
    limiter,
    metrics,
    log: app.log,
    inFlight: new Set(),
    warmup,
  };
  app.decorate('stageContext', ctx);

  // Before the hosted listener's onReady (registered below): no call is dispatched to a cold server.
  app.addHook('onReady', async () => {
    if (!warmup.enabled) return;
    const s = await warmup.run(ctx, { timeoutMs: options.warmTimeoutMs ?? WARM_TIMEOUT_MS });
    const failed = Object.entries(s.parts).filter(([, p]) => !p.ok);
    if (failed.length === 0) app.log.info({ ms: s.ms, parts: s.parts }, 'warm-up finished');
    else app.log.warn({ ms: s.ms, parts: s.parts }, 'warm-up finished with failures: those load on first use');
  });

  // Requests still waiting for a slot are sent away (503, nothing started) before the server waits
  // for the ones at work (docs/stage-api.md, "Admission").
  app.addHook('preClose', async () => {
    limiter.close();
  });
  app.addHook('onClose', async () => {
    await warmup.stop();
    metrics.close();
    await cpu.close();
    await backends.close();
    if (ownsPool) await pool.end();
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      return reply.code(400).send({ error: `invalid request: ${err.message}` });
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: `request body larger than ${config.bodyLimit} bytes` });
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ error: err.message });
    }
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send({ error: `internal error: ${err.message}` });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url}` }));

  // Every answer, the 401s and the assets included: the declared type is the type (docs/stage-api.md).
  app.addHook('onRequest', async (_req, reply) => {
    reply.header('x-content-type-options', 'nosniff');
  });
  // First: a request refused by the token check still has its span (docs/tracing.md).
  await app.register(tracingPlugin, { stepOf: (url) => stepForRoute(url) });
  await app.register(authPlugin, { token: config.token });
  await app.register(healthRoutes, {
    ctx,
    listenerStatus: () => {
      const l = hasListener(app);
      if (!l) return { hosted: false };
      try {
        return { hosted: true, status: l.status() };
      } catch (err) {
        return { hosted: true, error: (err as Error).message };
      }
    },
  });
  await app.register(metricsRoutes, { metrics });
  await app.register(assetRoutes, { ctx });
  await app.register(stageRoutes, { ctx, ...(options.hooks ? { hooks: options.hooks } : {}) });

  if (options.listener !== false) {
    // The plugin honours ENABLE_JOB_STATE_LISTENER itself (registers, opens nothing and says so when false).
    // Hosted here, it calls this very server with its token unless told otherwise.
    const env = options.env ?? process.env;
    const given: JobStateListenerOptions = typeof options.listener === 'object' ? options.listener : {};
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    const ownUrl = `http://${host.includes(':') ? `[${host}]` : host}:${config.port}`;
    const stageUrl = (given.stageApiUrl ?? (env.STAGE_API_URL?.trim() || ownUrl)).replace(/\/+$/, '');
    // Calls to this very server at once: its slots (docs/stage-api.md, "Admission"). What cannot run
    // now waits unclaimed in the database, not in this server's queues.
    const inFlight = options.hostedInFlight ?? stageSlots(ctx);
    const limitOwn =
      inFlight !== false && config.port > 0 && stageUrl === ownUrl && given.maxInFlightPerUrl === undefined;
    const listenerOptions: JobStateListenerOptions = {
      ...(options.env ? { env: options.env as Record<string, string | undefined> } : {}),
      // The stage server's own database (the pool it was given, or its connection string), unless
      // the listener options name one.
      ...(given.pool || given.pgName || given.connectionString
        ? {}
        : options.pool
          ? { pool: options.pool }
          : { connectionString: config.databaseUrl }),
      ...(!env.STAGE_API_URL?.trim()
        ? { stageApiUrl: `http://${host.includes(':') ? `[${host}]` : host}:${config.port}` }
        : {}),
      ...(config.token ? { stageApiToken: config.token } : {}),
      ...(limitOwn ? { maxInFlightPerUrl: { [ownUrl]: inFlight } } : {}),
      metricsRegistry: metrics.registry,
      ...given,
    };
    await app.register(jobStateListener, listenerOptions);
  }
  return app as unknown as FastifyInstance;
}

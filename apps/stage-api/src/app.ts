/**
 * buildApp(options): the stage server, every route and plugin registered,
 * not listening (server.ts listens). Options override the environment.
 */
import jobStateListener, { type JobStateListenerOptions } from '@feedlyai/listener-plugin';
import { createStorage } from '@feedlyai/pipeline-core';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import pg from 'pg';
import { createBackends } from './clients/models.js';
import { type ConfigOverrides, loadConfig, type StageConfig } from './config.js';
import { createMetrics, type ListenerStatusSource } from './metrics.js';
import authPlugin from './plugins/auth.js';
import { assetRoutes } from './routes/assets.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { stageRoutes } from './routes/stages.js';
import { ResourceLimiter } from './stages/limiter.js';
import type { StageContext, StageHooks } from './stages/runner.js';
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
}

declare module 'fastify' {
  interface FastifyInstance {
    stageContext: StageContext;
  }
}

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
  }).withTypeProvider<TypeBoxTypeProvider>();

  const ownsPool = !options.pool;
  const pool =
    options.pool ?? new pg.Pool({ connectionString: config.databaseUrl, max: 10, application_name: 'stage_api' });
  pool.on('error', (err) => app.log.error({ err: err.message }, 'PostgreSQL pool error'));
  const storage = await createStorage({ root: config.storageDir });
  const metrics = createMetrics();
  const backends = createBackends(config);
  const cpu = createCpuRunner(config.cpuWorkers);
  const limiter = new ResourceLimiter(config.concurrency);
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
  };
  app.decorate('stageContext', ctx);

  app.addHook('onClose', async () => {
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
      metricsRegistry: metrics.registry,
      ...given,
    };
    await app.register(jobStateListener, listenerOptions);
  }
  return app as unknown as FastifyInstance;
}

/**
 * @feedlyai/dashboard: a live pipeline dashboard in the host's own Fastify
 * server (docs/dashboard.md).
 *
 *   await app.register(dashboard, { prefix: '/pipeline', onRequest: myAuthHook });
 *
 * An encapsulated plugin, on purpose not wrapped in fastify-plugin: its
 * static files, views, cookie and CSRF protection, error handler and the
 * host's auth hook stay inside its prefix and touch none of the host's routes.
 * Like the listener plugin, it finds its database when the host is ready
 * (the `pool` option, a named or the default @fastify/postgres, a connection
 * string, DATABASE_URL), so it boots in any registration order, and it
 * closes everything it opened: its pool, its LISTEN connection, the open
 * event streams, its timers and its HTTP agent.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import fastifyStatic from '@fastify/static';
import fastifyView from '@fastify/view';
import { redactUrl } from '@feedlyai/pipeline-core';
import { createStorage } from '@feedlyai/storage';
import { Eta } from 'eta';
import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import pg from 'pg';
import { type DashboardContext, isHtmx, wantsJson } from './context.js';
import { FilterError } from './filters.js';
import { ImageError, ImageService, stageSource, storageSource } from './images.js';
import { LiveHub } from './live/hub.js';
import { DashboardListen } from './live/listen.js';
import { parseNotification } from './live/notifications.js';
import { type DashboardOptions, DashboardOptionsError, type PoolLike, resolveOptions } from './options.js';
import { actionRoutes } from './routes/actions.js';
import { eventRoutes } from './routes/events.js';
import { imageRoutes } from './routes/images.js';
import { pageRoutes } from './routes/pages.js';

const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const VERSION = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Where a library's files are, from its package.json (none of these restrict it in `exports`). */
function packageDir(name: string, sub: string): string {
  return join(dirname(require.resolve(`${name}/package.json`)), sub);
}

/** The part of the listener plugin's decorator the dashboard uses (docs/integration.md). */
interface ListenerLike {
  status(): { enabled: boolean };
  subscribeNotifications?(s: {
    notification(channel: string, payload: string | undefined): void;
    reconnected?(): void;
  }): () => void;
}

function isPoolLike(v: unknown): v is PoolLike {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as PoolLike).query === 'function' &&
    typeof (v as PoolLike).connect === 'function'
  );
}

/** @fastify/csrf-protection's hook: 403 unless the request carries a token of the cookie's secret. */
export type CsrfHook = (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void;

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  // uPlot sizes its canvas through style attributes.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "form-action 'self'",
  "base-uri 'none'",
].join('; ');

const plugin: FastifyPluginAsync<DashboardOptions> = async (fastify, options) => {
  const cfg = resolveOptions(options);
  const log = fastify.log.child({ component: 'pipeline_dashboard' });
  const base = fastify.prefix;

  // The host's auth hook first: nothing of the dashboard (pages, events, images, static files) runs
  // for a request it rejects.
  if (cfg.onRequest) fastify.addHook('onRequest', cfg.onRequest);
  fastify.addHook('onSend', async (_req, reply, payload) => {
    reply.header('content-security-policy', CSP);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'same-origin');
    reply.header('x-frame-options', 'DENY');
    return payload;
  });

  // Cookies, forms and CSRF, inside this plugin only. A host that registered @fastify/cookie or
  // @fastify/formbody before us has them on every route already (a second registration would clash).
  if (!fastify.hasDecorator('parseCookie')) await fastify.register(fastifyCookie);
  if (!fastify.hasContentTypeParser('application/x-www-form-urlencoded')) {
    await fastify.register(fastifyFormbody, { bodyLimit: 64 * 1024 });
  }
  if (!fastify.hasReplyDecorator('generateCsrf')) {
    await fastify.register(fastifyCsrf, {
      cookieKey: 'pipeline_dashboard_csrf',
      cookieOpts: { path: base === '' ? '/' : base, sameSite: 'strict', httpOnly: true, secure: cfg.cookieSecure },
    });
  }
  const csrfProtection = (fastify as unknown as { csrfProtection: CsrfHook }).csrfProtection;

  await fastify.register(fastifyView, {
    engine: { eta: new Eta({ autoEscape: true, autoTrim: [false, 'nl'] }) },
    root: join(PACKAGE_ROOT, 'views'),
    propertyName: 'dashboardView',
    production: true,
    defaultContext: { base, version: VERSION },
  });
  const view = (fastify as unknown as { dashboardView(t: string, d: object): Promise<string> }).dashboardView;

  const statics: Array<[string, string]> = [
    ['/static/app/', join(PACKAGE_ROOT, 'public')],
    ['/static/htmx/', packageDir('htmx.org', 'dist')],
    ['/static/uplot/', packageDir('uplot', 'dist')],
    ['/static/pretendard/', packageDir('pretendard', 'dist/web/variable')],
  ];
  for (const [prefix, root] of statics) {
    await fastify.register(fastifyStatic, {
      root,
      prefix,
      decorateReply: false,
      dotfiles: 'ignore',
      index: false,
      list: false,
      maxAge: '1d',
    });
  }

  // Images: through the storage package, or from the stage server.
  let pool: pg.Pool | null = null;
  let ownPool: pg.Pool | null = null;
  const getPool = (): pg.Pool => {
    if (!pool) throw new Error('@feedlyai/dashboard: not started yet (the host is not ready)');
    return pool;
  };
  const source = cfg.storageDir
    ? storageSource(getPool, await createStorage({ root: cfg.storageDir }), {
        allowedHosts: cfg.imageFetchAllowedHosts,
        maxBytes: cfg.imageMaxBytes,
        timeoutMs: cfg.imageTimeoutMs,
      })
    : stageSource({
        stageApiUrl: cfg.stageApiUrl,
        token: cfg.stageApiToken,
        maxBytes: cfg.imageMaxBytes,
        timeoutMs: cfg.imageTimeoutMs,
      });
  const images = new ImageService(source, { cacheBytes: cfg.thumbnailCacheBytes });

  const hub = new LiveHub({ ringSize: cfg.ringSize });
  let liveSource: 'listener' | 'own' | 'none' = 'none';
  let ownListen: DashboardListen | null = null;
  let unsubscribe: (() => void) | null = null;
  let heartbeat: NodeJS.Timeout | null = null;
  let invalid = 0;
  const onNotification = (channel: string, payload: string | undefined) => {
    const n = parseNotification(channel, payload);
    if (n.ok) hub.publish(n.type, n.data);
    else if (++invalid <= 10 || invalid % 1000 === 0) {
      log.warn({ channel: n.channel, err: n.error, invalid }, 'dashboard: malformed notification skipped');
    }
  };

  const ctx: DashboardContext = {
    cfg,
    pool: getPool,
    hub,
    images,
    base,
    render: (template, data) => view(template, data),
    csrfToken: (reply) => (reply as unknown as { generateCsrf(): string }).generateCsrf(),
    liveSource: () => liveSource,
  };

  fastify.setErrorHandler(async (err: FastifyError, req, reply) => {
    const csrf = err.code === 'FST_CSRF_MISSING_SECRET' || err.code === 'FST_CSRF_INVALID_TOKEN';
    let status = csrf ? 403 : err instanceof FilterError ? 400 : err instanceof ImageError ? err.statusCode : 500;
    if (
      !csrf &&
      status === 500 &&
      typeof err.statusCode === 'number' &&
      err.statusCode >= 400 &&
      err.statusCode < 500
    ) {
      status = err.statusCode;
    }
    const message = csrf
      ? 'missing or wrong CSRF token: reload the page and try again'
      : status === 500
        ? 'internal error (see the server log)'
        : err.message;
    if (status >= 500) log.error({ err, url: req.url }, 'dashboard: request failed');
    reply.code(status);
    if (wantsJson(req)) return { error: message, ...(csrf ? { code: 'csrf' } : {}) };
    const html = await view(isHtmx(req) ? 'partials/message' : 'message', {
      title: `${status}`,
      kind: 'error',
      message,
    });
    return reply.type('text/html; charset=utf-8').send(html);
  });
  fastify.setNotFoundHandler(async (req, reply) => {
    reply.code(404);
    if (wantsJson(req)) return { error: 'not found' };
    const html = await view('message', { title: '404', kind: 'error', message: `nothing at ${req.url}` });
    return reply.type('text/html; charset=utf-8').send(html);
  });

  await fastify.register(pageRoutes, { ctx });
  await fastify.register(eventRoutes, { ctx });
  await fastify.register(imageRoutes, { ctx });
  await fastify.register(actionRoutes, { ctx, csrfProtection });

  let stopped = false;
  fastify.addHook('onReady', async () => {
    if (stopped) return;
    const found = findDatabase(fastify, cfg);
    if ('pool' in found) pool = found.pool as pg.Pool;
    else {
      ownPool = new pg.Pool({
        connectionString: found.connectionString,
        max: 5,
        application_name: 'pipeline_dashboard_pages',
        query_timeout: 30_000,
      });
      ownPool.on('error', (err) => log.warn({ err: err.message }, 'dashboard: idle pool connection failed'));
      pool = ownPool;
    }
    const listener = fastify.hasDecorator('jobStateListener')
      ? (fastify as unknown as { jobStateListener: ListenerLike }).jobStateListener
      : null;
    if (listener?.status().enabled && typeof listener.subscribeNotifications === 'function') {
      unsubscribe = listener.subscribeNotifications({
        notification: onNotification,
        reconnected: () => hub.gap('the LISTEN connection was lost and came back'),
      });
      liveSource = 'listener';
    } else {
      ownListen = new DashboardListen({
        source: 'pool' in found ? { pool: found.pool as never } : { connectionString: found.connectionString },
        onNotification,
        onReconnected: () => hub.gap('the LISTEN connection was lost and came back'),
        log,
      });
      liveSource = 'own';
      await ownListen.start();
    }
    heartbeat = setInterval(() => hub.heartbeat(), cfg.heartbeatMs);
    log.info(
      { prefix: base || '/', database: found.label, live: liveSource, images: source.kind },
      'pipeline dashboard ready',
    );
  });

  // preClose: the event streams end (an open stream would keep the server from closing) and the
  // LISTEN client goes back before the host's own plugins close their pools in onClose.
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = null;
    unsubscribe?.();
    unsubscribe = null;
    hub.closeAll();
    await ownListen?.stop();
  };
  fastify.addHook('preClose', stop);
  fastify.addHook('onClose', async () => {
    await stop();
    await images.close().catch(() => {});
    if (ownPool) await ownPool.end().catch(() => {});
  });
};

type Database = { pool: PoolLike; label: string } | { connectionString: string; label: string };

/** The pool option, a named @fastify/postgres, the connectionString option, the default @fastify/postgres, DATABASE_URL. */
function findDatabase(fastify: FastifyInstance, cfg: ReturnType<typeof resolveOptions>): Database {
  if (cfg.pool) return { pool: cfg.pool, label: 'the pool option' };
  const pgDecorator = fastify.hasDecorator('pg')
    ? (fastify as unknown as { pg: Record<string, unknown> }).pg
    : undefined;
  if (cfg.pgName !== null) {
    const named = (pgDecorator?.[cfg.pgName] as { pool?: unknown } | undefined)?.pool;
    if (!isPoolLike(named)) {
      throw new DashboardOptionsError(
        `option pgName: no @fastify/postgres registration named '${cfg.pgName}' (register @fastify/postgres with { name: '${cfg.pgName}' })`,
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
  throw new DashboardOptionsError(
    'no database: pass the pool or connectionString option, register @fastify/postgres, or set DATABASE_URL',
  );
}

/**
 * The dashboard plugin. Register it with a prefix and the host's auth hook:
 * `app.register(dashboard, { prefix: '/pipeline', onRequest })`.
 */
export const dashboard = plugin;
export default dashboard;

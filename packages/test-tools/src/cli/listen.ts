/**
 * `feedly-pipeline listen`: the job state listener on its own, for a team
 * whose API server is not Fastify (docs/cli.md). A bare Fastify with
 * @feedlyai/listener-plugin registered from the environment (optionsFromEnv,
 * docs/configuration.md) and the command's options over it; optionally
 * `GET /healthz` answering the listener's status(). Stops cleanly on
 * SIGTERM/SIGINT: app.close() (the plugin finishes its calls, closes its
 * LISTEN connection and removes its registration), then exit 0.
 */
import { ConfigError, type JobStateListenerOptions, jobStateListener, optionsFromEnv } from '@feedlyai/listener-plugin';
import { migrate, redactUrl } from '@feedlyai/pipeline-core';
import { Command, InvalidArgumentError } from 'commander';
import Fastify from 'fastify';
import {
  action,
  type CommandContext,
  openPool,
  parseNonEmpty,
  requireMigrated,
  resolveDatabaseUrl,
  UsageError,
} from './common.js';

export function parsePort(value: string): number {
  const v = value.trim();
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError(`expected a port from 0 to 65535, got '${value}'`);
  return n;
}

export function parseHttpUrl(value: string): string {
  try {
    const u = new URL(value.trim());
    if (u.protocol === 'http:' || u.protocol === 'https:') return value.trim();
  } catch {
    // reported below
  }
  throw new InvalidArgumentError(`expected an http(s) URL, got '${value}'`);
}

/** Resolves when the signal aborts (SIGINT/SIGTERM in the CLI process). */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

interface ListenFlags {
  databaseUrl?: string;
  stageApiUrl?: string;
  port?: number;
  host: string;
  migrate?: boolean;
}

export function listenCommand(ctx: CommandContext): Command {
  const cmd = new Command('listen')
    .description(
      'run the job state listener on its own: LISTEN, claims, stage calls, retries and recovery, configured from the environment (ENABLE_JOB_STATE_LISTENER, JOB_STATE_LISTENER_*, PIPELINE_*, STAGE_API_URL, STAGE_API_TOKEN); for an API server that is not Fastify',
    )
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .option(
      '--stage-api-url <url>',
      'where stages are called (default: STAGE_API_URL or http://localhost:8011)',
      parseHttpUrl,
    )
    .option(
      '--port <n>',
      "serve GET /healthz on this port: the listener's status as JSON, 200 when its LISTEN connection is up, 503 otherwise",
      parsePort,
    )
    .option('--host <address>', 'address of the health endpoint', parseNonEmpty, '127.0.0.1')
    .option('--migrate', 'apply the schema migrations first (additive, safe to run concurrently)')
    .addHelpText(
      'after',
      `
Logs go to stdout as JSON lines (LOG_LEVEL, default info); docs/logs.md lists them.
SIGTERM or Ctrl-C stops it cleanly (calls in flight finish, the registration is removed): exit 0.
Exit code 1 when the database cannot be reached or is not migrated, 2 for a bad argument or variable.
Examples:
  feedly-pipeline listen
  feedly-pipeline listen --stage-api-url http://gpu-box:8011 --port 8012
  feedly-pipeline listen --env-file /etc/feedly/listener.env --migrate`,
    );
  cmd.action(
    action(ctx, cmd, async (opts: ListenFlags) => {
      const env = ctx.io.env;
      let fromEnv: ReturnType<typeof optionsFromEnv>;
      try {
        fromEnv = optionsFromEnv(env);
      } catch (err) {
        if (err instanceof ConfigError) throw new UsageError(err.message);
        throw err;
      }
      if (fromEnv.enabled === false) {
        throw new UsageError(
          `ENABLE_JOB_STATE_LISTENER=${env.ENABLE_JOB_STATE_LISTENER}: the listener is disabled, so listen has nothing to run (unset it or set it to true)`,
        );
      }
      const url = resolveDatabaseUrl(opts, env);
      const pool = await openPool(url, { max: 1 });
      try {
        if (opts.migrate) await migrate(pool);
        await requireMigrated(pool);
      } finally {
        await pool.end().catch(() => {});
      }

      const app = Fastify({ logger: { level: env.LOG_LEVEL?.trim() || 'info' } });
      const options: JobStateListenerOptions = {
        env: env as Record<string, string | undefined>,
        connectionString: url,
        ...(opts.stageApiUrl ? { stageApiUrl: opts.stageApiUrl } : {}),
      };
      try {
        await app.register(jobStateListener, options);
        if (opts.port !== undefined) {
          app.get('/healthz', async (_req, reply) => {
            const status = app.jobStateListener.status();
            return reply.code(status.connected ? 200 : 503).send(status);
          });
          await app.listen({ host: opts.host, port: opts.port });
        } else {
          await app.ready();
        }
      } catch (err) {
        await app.close().catch(() => {});
        if (err instanceof ConfigError) throw new UsageError(err.message);
        throw err;
      }
      const address = app.server.address();
      const port = address !== null && typeof address === 'object' ? address.port : opts.port;
      app.log.info(
        { database: redactUrl(url), health: opts.port !== undefined ? `http://${opts.host}:${port}/healthz` : null },
        'feedly-pipeline listen running (SIGTERM or Ctrl-C stops it)',
      );
      await aborted(ctx.io.signal);
      app.log.info('feedly-pipeline listen stopping');
      await app.close();
      return 0;
    }),
  );
  return cmd;
}

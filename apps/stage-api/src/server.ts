/**
 * The stage server process: read the environment (with an env file under
 * it), migrate (the engine's set and this server's own), listen on HOST:PORT (127.0.0.1:8011), shut down gracefully
 * on SIGTERM/SIGINT (in-flight stage calls finish, pools and workers close).
 *
 *   node dist/server.js [ENV_FILE_PATH]
 *   node -- dist/server.js --env-file PATH
 *
 * The env file is the argument, else ENV_FILE, else `.env` in the current
 * directory when there is one; variables already in the environment win over
 * it (docs/cli.md, "Environment files"). A bad argument, a missing explicit
 * env file, a line of it that cannot be parsed, or an invalid setting exits 2
 * with one line naming it. (Node itself checks a `--env-file` it sees after
 * the script and exits 9 when the file is missing, unless `--` comes before
 * the script: hence the plain argument.)
 */
import { parseArgs } from 'node:util';
import { ConfigError as ListenerConfigError } from '@feedlyai/listener-plugin';
import { EnvFileError, loadEnv, migrate, redactUrl } from '@feedlyai/pipeline-core';
import { ConfigError, loadConfig } from './config.js';
import { STAGE_MIGRATION_SET } from './migrations/index.js';

const USAGE =
  'usage: node dist/server.js [ENV_FILE_PATH]  (or --env-file PATH, or ENV_FILE=PATH; default ./.env when present)';

/** A configuration problem: one line on stderr, exit 2. */
function configFailure(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

function readEnvironment(): { env: NodeJS.ProcessEnv; file: string | null; applied: string[] } {
  let file: string | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: process.argv.slice(2),
      options: { 'env-file': { type: 'string' } },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 1 || (positionals.length === 1 && values['env-file'] !== undefined)) {
      throw new Error('give one env file');
    }
    file = values['env-file'] ?? positionals[0];
  } catch (err) {
    configFailure(`stage-api: ${(err as Error).message}\n${USAGE}`);
  }
  const fromEnv = process.env.ENV_FILE?.trim();
  try {
    return loadEnv({ file: file ?? (fromEnv ? fromEnv : undefined), env: process.env });
  } catch (err) {
    if (err instanceof EnvFileError) configFailure(`stage-api: ${err.message}`);
    throw err;
  }
}

async function main(): Promise<void> {
  const { env, file, applied } = readEnvironment();
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({}, env);
  } catch (err) {
    if (err instanceof ConfigError) configFailure(err.message);
    throw err;
  }
  // The engine's set, then this server's own (docs/migrations.md): its tables reference the engine's.
  await migrate(config.databaseUrl);
  await migrate(config.databaseUrl, { set: STAGE_MIGRATION_SET });
  // Loaded after the configuration is known to be valid: a bad setting fails fast.
  const { buildApp } = await import('./app.js');
  let app: Awaited<ReturnType<typeof buildApp>>;
  try {
    // Warm-up before listening: the first calls do not pay for cold models (docs/stage-api.md, "Warm-up").
    app = await buildApp({ env, logger: { level: env.LOG_LEVEL?.trim() || 'info' }, warm: true });
  } catch (err) {
    // The hosted listener's variables (ENABLE_JOB_STATE_LISTENER, PIPELINE_FANIN_POLICY...), named by the plugin.
    if (err instanceof ListenerConfigError || err instanceof ConfigError) configFailure(err.message);
    throw err;
  }
  if (file) app.log.info({ env_file: file, variables: applied }, 'environment file loaded');
  app.log.info(
    { database: redactUrl(config.databaseUrl), storage: config.storageDir },
    'PostgreSQL connected, migrations applied',
  );

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      app.log.error('graceful shutdown took longer than 30 s: exiting');
      process.exit(1);
    }, 30_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));

  await app.listen({ host: config.host, port: config.port });
}

main().catch((err: unknown) => {
  process.stderr.write(`stage-api failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});

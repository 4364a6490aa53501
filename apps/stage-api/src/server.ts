/**
 * The stage server process: migrate, listen on HOST:PORT (127.0.0.1:8011),
 * shut down gracefully on SIGTERM/SIGINT (in-flight stage calls finish,
 * pools and workers close).
 */
import { migrate, redactUrl } from '@feedlyai/pipeline-core';
import { ConfigError, loadConfig } from './config.js';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  await migrate(config.databaseUrl);
  // Loaded after the configuration is known to be valid: a bad setting fails fast.
  const { buildApp } = await import('./app.js');
  const app = await buildApp();
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

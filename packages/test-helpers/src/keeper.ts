/**
 * The keeper of one test run's PostgreSQL (docs/testing.md), a detached
 * process started by the first test file of the run that asks for a database:
 *
 *   node keeper.js <runDir> <watchPid>
 *
 * It starts the run's embedded PostgreSQL in `<runDir>/data` (with
 * FEEDLY_TEST_EXTERNAL_URL set it starts nothing and only names the run),
 * writes `<runDir>/state.json`, and once the watched process (the tap runner,
 * or a test file run on its own) has exited, however it ended, stops the
 * server and removes the run folder; on an external server it drops the
 * run's databases instead. It then sweeps the folders of earlier runs whose
 * keeper was killed.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type EmbeddedServer, startEmbeddedPostgres } from './embedded.js';
import { isAlive, keeperPidPath, RUN_DIR_PREFIX, readPid, writeState } from './run-state.js';

const WATCH_INTERVAL_MS = 200;

async function dropRunDatabases(adminUrl: string, prefix: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const r = await admin.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datistemplate`,
      [`${prefix}_`],
    );
    for (const { datname } of r.rows) {
      const name = pg.escapeIdentifier(datname);
      await admin.query(`ALTER DATABASE ${name} WITH IS_TEMPLATE false`);
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  } finally {
    await admin.end();
  }
}

/**
 * Removes the folders of earlier runs whose keeper no longer exists (killed
 * with SIGKILL, or the machine went down). A postgres still running in such
 * a folder is shut down first; on Linux the pid is checked to be that
 * postgres before it is signalled, elsewhere a live one is left alone.
 */
async function sweepDeadRuns(ownDir: string): Promise<void> {
  const root = tmpdir();
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!name.startsWith(RUN_DIR_PREFIX)) continue;
    const dir = join(root, name);
    if (dir === ownDir) continue;
    const keeper = await readPid(keeperPidPath(dir));
    if (keeper !== null && isAlive(keeper)) continue;
    const info = await stat(dir).catch(() => null);
    // A folder without a keeper pid yet may be one being created right now.
    if (!info || (keeper === null && Date.now() - info.mtimeMs < 60_000)) continue;
    const dataDir = join(dir, 'data');
    const postmaster = await readPid(join(dataDir, 'postmaster.pid'));
    if (postmaster !== null && isAlive(postmaster)) {
      const cmdline = await readFile(`/proc/${postmaster}/cmdline`, 'utf8').catch(() => '');
      if (!cmdline.includes('postgres') || !cmdline.includes(dataDir)) continue;
      process.kill(postmaster, 'SIGINT'); // fast shutdown
      const deadline = Date.now() + 30_000;
      while (isAlive(postmaster) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (isAlive(postmaster)) continue;
    }
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

async function main(): Promise<void> {
  const [dir, watchArg] = process.argv.slice(2);
  const watchPid = Number(watchArg);
  if (!dir || !Number.isInteger(watchPid) || watchPid <= 0) {
    process.stderr.write('usage: keeper.js <runDir> <watchPid>\n');
    process.exit(2);
  }
  const external = process.env.FEEDLY_TEST_EXTERNAL_URL || null;
  const prefix = `feedly_t${randomBytes(4).toString('hex')}`;
  let server: EmbeddedServer | null = null;
  let starting: Promise<void> = Promise.resolve();
  let stopping = false;

  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await starting; // never leave a postgres behind that was still starting
    try {
      if (server) await server.stop();
      else if (external) await dropRunDatabases(external, prefix);
    } catch {
      // Nothing to report to: the run is over. The sweep of a later run removes what is left.
    }
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    process.exit(0);
  };
  // Watch before starting: a run that ends while the server starts still cleans up.
  setInterval(() => {
    if (!isAlive(watchPid)) void shutdown();
  }, WATCH_INTERVAL_MS);

  starting = (async () => {
    if (external) return await writeState(dir, { url: external, prefix });
    const log: string[] = [];
    try {
      server = await startEmbeddedPostgres({
        dataDir: join(dir, 'data'),
        onLog: (line) => {
          log.push(line.trimEnd());
          if (log.length > 30) log.shift();
        },
      });
      await writeState(dir, { url: server.url('postgres'), prefix });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      await writeState(dir, { url: '', prefix, error: `embedded PostgreSQL did not start: ${why}\n${log.join('\n')}` });
    }
  })().catch(() => {});
  await starting;
  await sweepDeadRuns(dir).catch(() => {});
}

await main();

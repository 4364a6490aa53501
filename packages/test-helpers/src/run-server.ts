/**
 * The PostgreSQL server of the current test run (docs/testing.md).
 *
 * Under tap every test file is a child of the tap runner, so "the run" is the
 * runner's pid; a file run on its own (`node --import tsx test/x.test.ts`) is
 * its own run. The first file of a run that asks for a server creates the
 * run's folder (an atomic mkdir: the lock) and starts the keeper
 * (keeper.ts), a detached process that starts PostgreSQL and stops it once
 * the runner has exited; every other file of the run waits for the keeper's
 * state file and uses the same server.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive, keeperPidPath, type RunState, readPid, readState, runDir } from './run-state.js';

/** initdb and the first start on a busy 2-core machine took 21 s; leave room. */
const START_TIMEOUT_MS = 180_000;
/** A run folder with no keeper pid after this long was left by a process that died creating it. */
const CREATE_GRACE_MS = 15_000;

export interface RunServer {
  /** The admin URL (the server's `postgres` database, or TEST_DATABASE_URL itself). */
  url: string;
  /** Prefix of this run's database names; the keeper drops them on an external server. */
  prefix: string;
}

/** The process whose exit ends the run, and the run folder's name. */
export function currentRun(external: string | null): { watchPid: number; key: string } {
  const underTap = process.env.TAP === '1';
  const watchPid = underTap ? process.ppid : process.pid;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const mode = external ? `x${createHash('sha256').update(external).digest('hex').slice(0, 10)}` : 'e';
  return { watchPid, key: `${uid}-${watchPid}-${mode}` };
}

function keeperScript(): string {
  const here = fileURLToPath(import.meta.url);
  // This package's own tests load src/*.ts; the keeper always runs compiled.
  return here.endsWith('.ts') ? join(dirname(here), '..', 'dist', 'keeper.js') : join(dirname(here), 'keeper.js');
}

function keeperEnv(external: string | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // No test-runner loaders or coverage hooks in the keeper.
    if (k === 'NODE_OPTIONS' || k.startsWith('TAP') || k.startsWith('_TAPJS')) continue;
    env[k] = v;
  }
  if (external) env.FEEDLY_TEST_EXTERNAL_URL = external;
  else delete env.FEEDLY_TEST_EXTERNAL_URL;
  return env;
}

async function startKeeper(dir: string, watchPid: number, external: string | null): Promise<void> {
  const child = spawn(process.execPath, [keeperScript(), dir, String(watchPid)], {
    detached: true,
    stdio: 'ignore',
    env: keeperEnv(external),
  });
  child.unref();
  if (!child.pid) throw new Error('could not start the test PostgreSQL keeper process');
  await writeFile(keeperPidPath(dir), String(child.pid));
}

/** Waits for the keeper's state; null when the folder turned out to be stale (its keeper is gone). */
async function awaitState(dir: string, deadline: number): Promise<RunState | null> {
  for (;;) {
    const state = await readState(dir);
    const keeper = await readPid(keeperPidPath(dir));
    if (keeper !== null && !isAlive(keeper)) return null;
    if (state) {
      if (state.error) throw new Error(`test PostgreSQL: ${state.error}`);
      return state;
    }
    if (keeper === null) {
      const info = await stat(dir).catch(() => null);
      if (!info || Date.now() - info.mtimeMs > CREATE_GRACE_MS) return null;
    }
    if (Date.now() > deadline) {
      throw new Error(`test PostgreSQL: not up after ${START_TIMEOUT_MS / 1000} s (run folder ${dir})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const runs = new Map<string, Promise<RunServer>>();

/** The run's server: `external` (TEST_DATABASE_URL) or the run's embedded PostgreSQL. */
export function runServer(external: string | null): Promise<RunServer> {
  const { watchPid, key } = currentRun(external);
  let run = runs.get(key);
  if (!run) {
    run = acquire(runDir(key), watchPid, external);
    runs.set(key, run);
    run.catch(() => runs.delete(key));
  }
  return run;
}

async function acquire(dir: string, watchPid: number, external: string | null): Promise<RunServer> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    let created = false;
    try {
      await mkdir(dir);
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (created) {
      // Run as root, the server runs as 'postgres' and must reach its data folder in here.
      await chmod(dir, 0o755);
      await startKeeper(dir, watchPid, external);
    }
    const state = await awaitState(dir, deadline);
    if (state) return { url: state.url, prefix: state.prefix };
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The files a test run's PostgreSQL is found by (docs/testing.md): one folder
 * per run under the system's temporary folder, holding the keeper's pid and,
 * once the server is up, `state.json` (its URL and the run's database name
 * prefix, or the error that kept it from starting).
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Every run folder's name starts with this (the keeper's sweep looks for it). */
export const RUN_DIR_PREFIX = 'feedly-test-pg-';

export interface RunState {
  /** A URL of the server's `postgres` database (the admin connection). */
  url: string;
  /** Prefix of every database this run creates (template and test databases). */
  prefix: string;
  /** Why the server could not be started; `url` is empty then. */
  error?: string;
}

export function runDir(key: string): string {
  return join(tmpdir(), `${RUN_DIR_PREFIX}${key}`);
}

export const statePath = (dir: string) => join(dir, 'state.json');
export const keeperPidPath = (dir: string) => join(dir, 'keeper.pid');

/** Written to a temporary name and renamed, so a reader never sees half a file. */
export async function writeState(dir: string, state: RunState): Promise<void> {
  const tmp = `${statePath(dir)}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state));
  await rename(tmp, statePath(dir));
}

export async function readState(dir: string): Promise<RunState | null> {
  try {
    return JSON.parse(await readFile(statePath(dir), 'utf8')) as RunState;
  } catch {
    return null;
  }
}

export async function readPid(file: string): Promise<number | null> {
  try {
    const n = Number.parseInt(await readFile(file, 'utf8'), 10);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** Whether a process exists (EPERM: it exists, owned by another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

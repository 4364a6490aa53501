/**
 * Test helpers: a real migrated PostgreSQL database per test file (made from
 * the run's template on the run's server, docs/testing.md), a temporary
 * storage folder, and the built CLI run as a child process
 * (`node bin/feedly-pipeline.js`).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, freePort, type TestDatabase } from '@feedlyai/test-helpers';
import { migrateAllSets } from '../src/migrations.js';

export { jobState, markImgGenDone, seedJob, variantState, waitFor } from '@feedlyai/test-helpers';

export const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));
export const BIN = join(PACKAGE_DIR, 'bin', 'feedly-pipeline.js');

/** Every migration set the tests need (the engine's and the stage server's), applied once per run to the template. */
export async function migrateAll(url: string): Promise<void> {
  await migrateAllSets(url);
}

export async function testDb(): Promise<TestDatabase> {
  return await createTestDatabase({ migrate: migrateAll, template: 'pipeline' });
}

export async function tempDir(prefix = 'feedly-tt-'): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** An environment without any database or listener variables of the machine. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (/^(DB_|DATABASE_URL|STORAGE_DIR|STAGE_API|ENABLE_JOB_STATE_LISTENER|PORT$|HOST$)/.test(k)) delete env[k];
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/**
 * Runs a command in this process through `runCli` (src/cli/program.ts), the
 * function the process entry point calls: the same parsing, environment files,
 * output and exit codes, without the cost of a node process per call (about
 * 1 s of CPU each on this machine). What only the process wrapper does
 * (waiting for a pipe to drain, signals, `node -- bin/...`) is tested through
 * `runCliProcess`.
 */
export async function runCliInProcess(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; signal?: AbortSignal } = {},
): Promise<CliRun> {
  const { runCli } = await import('../src/cli/program.js');
  let stdout = '';
  let stderr = '';
  const line = (s: string) => (s.endsWith('\n') ? s : `${s}\n`);
  const sink = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      stdout += String(chunk);
      done();
    },
  });
  const toOut = (s: string) => {
    stdout += s;
  };
  const toErr = (s: string) => {
    stderr += s;
  };
  const code = await runCli(args, {
    out: (s) => toOut(line(s)),
    err: (s) => toErr(line(s)),
    rawOut: toOut,
    rawErr: toErr,
    env: opts.env ?? cleanEnv(),
    cwd: opts.cwd ?? PACKAGE_DIR,
    isTTY: false,
    stdout: sink,
    signal: opts.signal ?? new AbortController().signal,
  });
  return { code, signal: null, stdout, stderr };
}

export interface SpawnedCli {
  child: ReturnType<typeof spawn>;
  stdout(): string;
  stderr(): string;
  done: Promise<CliRun>;
}

/** Starts the built CLI; `done` resolves when it exits. */
export function startCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): SpawnedCli {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: opts.env ?? cleanEnv(),
    cwd: opts.cwd ?? PACKAGE_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  const done = new Promise<CliRun>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  return { child, stdout: () => out, stderr: () => err, done };
}

export async function runCliProcess(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CliRun> {
  const c = startCli(args, opts);
  const timer = setTimeout(() => c.child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  try {
    return await c.done;
  } finally {
    clearTimeout(timer);
  }
}

export interface StageServer {
  baseUrl: string;
  close(): Promise<void>;
}

/**
 * The real stage server (buildApp from @feedlyai/stage-api) on a free port,
 * hosting the listener plugin unless `listener` is false.
 */
export async function startStageServer(
  dbUrl: string,
  storageDir: string,
  o: { listener?: boolean | Record<string, unknown> } = {},
): Promise<StageServer> {
  const { buildApp } = await import('@feedlyai/stage-api');
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const listener =
    o.listener === false
      ? false
      : {
          stageApiUrl: baseUrl,
          connectionString: dbUrl,
          enabled: true,
          ...(typeof o.listener === 'object' ? o.listener : {}),
        };
  const app = await buildApp({
    databaseUrl: dbUrl,
    storageDir,
    host: '127.0.0.1',
    port,
    logger: false,
    env: cleanEnv({ STAGE_API_URL: baseUrl, ENABLE_JOB_STATE_LISTENER: 'true' }),
    listener,
  });
  await app.listen({ host: '127.0.0.1', port });
  return { baseUrl, close: async () => void (await app.close()) };
}

/**
 * Environment files: every command reads ./.env (or --env-file PATH) under
 * the real environment, which wins. A missing explicit file or a line that
 * cannot be parsed exits 2 naming the file and the line. No database: the
 * unreachable URLs the files give show which one was read.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BIN, type CliRun, cleanEnv, runCliInProcess } from './helpers.js';

/**
 * The real program, started as the root script starts it (`node -- bin/...`):
 * without the `--`, Node itself checks a `--env-file` argument and exits 9
 * when the file is missing, before the CLI runs (docs/cli.md).
 */
function cliProcess(args: string[], o: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<CliRun> {
  const child = spawn(process.execPath, ['--', BIN, ...args], {
    cwd: o.cwd,
    env: o.env ?? cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

/** The same commands in this process (runCli, with the folder as its working directory). */
const cli = (args: string[], o: { cwd: string; env?: NodeJS.ProcessEnv }) => runCliInProcess(args, o);

const dir = await mkdtemp(join(tmpdir(), 'feedly-cli-env-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
await writeFile(
  join(dir, '.env'),
  '# the default file\nDATABASE_URL=postgres://dotenv:secret@127.0.0.1:1/from_dotenv\n',
);
await writeFile(join(dir, 'other.env'), 'export DATABASE_URL="postgres://other:secret@127.0.0.1:1/from_other"\n');
const badDir = join(dir, 'bad');
await mkdir(badDir);
await writeFile(
  join(badDir, '.env'),
  'DATABASE_URL=postgres://x@127.0.0.1:1/x\n\nSTAGE_API_URL http://localhost:8011\n',
);

t.test('./.env is read; a variable already set wins; --env-file replaces ./.env', async (t) => {
  const fromDotenv = await cli(['seed-ye'], { cwd: dir });
  t.equal(fromDotenv.code, 1);
  t.match(fromDotenv.stderr, /^cannot connect to PostgreSQL at postgres:\/\/dotenv:\*\*\*@127\.0\.0\.1:1\/from_dotenv/);

  const real = await cli(['seed-ye'], {
    cwd: dir,
    env: cleanEnv({ DATABASE_URL: 'postgres://real:secret@127.0.0.1:1/from_real' }),
  });
  t.match(real.stderr, /^cannot connect to PostgreSQL at postgres:\/\/real:\*\*\*@127\.0\.0\.1:1\/from_real/);

  const other = await cli(['seed-ye', '--env-file', 'other.env'], { cwd: dir });
  t.match(other.stderr, /^cannot connect to PostgreSQL at postgres:\/\/other:\*\*\*@127\.0\.0\.1:1\/from_other/);

  const abs = await cli(['analyze', '--tenant-id', 'x', '--env-file', join(dir, 'other.env')], { cwd: badDir });
  t.equal(abs.code, 1, 'an explicit file: ./.env (a bad one here) is not read');
  t.match(abs.stderr, /from_other/);
  t.notMatch(fromDotenv.stderr + real.stderr + other.stderr, /secret/, 'passwords redacted');
});

t.test('a missing --env-file (or ENV_FILE) exits 2 and names it', async (t) => {
  const r = await cli(['seed', '--once', '--env-file', 'nope.env'], { cwd: dir });
  t.equal(r.code, 2);
  t.match(r.stderr, `error: cannot read env file ${join(dir, 'nope.env')}: no such file`);
  t.match(r.stderr, /Usage: feedly-pipeline seed/);
  const viaEnv = await cli(['seed', '--once'], { cwd: dir, env: cleanEnv({ ENV_FILE: 'nope.env' }) });
  t.equal(viaEnv.code, 2, 'ENV_FILE: the same');
  t.match(viaEnv.stderr, `error: cannot read env file ${join(dir, 'nope.env')}: no such file`);
  const both = await cli(['seed-ye', '--env-file', 'other.env'], { cwd: dir, env: cleanEnv({ ENV_FILE: 'nope.env' }) });
  t.match(both.stderr, /from_other/, '--env-file wins over ENV_FILE');
});

t.test('a line that cannot be parsed exits 2 naming the file and the line, on every command', async (t) => {
  const id = '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a';
  const commands = [
    ['migrate'],
    ['retry', id],
    ['cancel', id],
    ['seed', '--once'],
    ['seed-ye'],
    ['status'],
    ['verify-trigger', id],
    ['monitor', id],
    ['analyze', '--job-id', id],
    ['listen'],
  ];
  for (const args of commands) {
    const r = await cli(args, { cwd: badDir });
    t.equal(r.code, 2, `${args[0]} exits 2`);
    t.match(
      r.stderr,
      `error: ${join(badDir, '.env')}:3: cannot parse this line: expected NAME=value`,
      `${args[0]} names the file and the line`,
    );
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test('the process: ./.env read from its working directory, a missing --env-file exits 2', async (t) => {
  const fromDotenv = await cliProcess(['seed-ye'], { cwd: dir });
  t.equal(fromDotenv.code, 1);
  t.match(fromDotenv.stderr, /^cannot connect to PostgreSQL at postgres:\/\/dotenv:\*\*\*@127\.0\.0\.1:1\/from_dotenv/);
  const missing = await cliProcess(['seed', '--once', '--env-file', 'nope.env'], { cwd: dir });
  t.equal(missing.code, 2, 'exit 2 from the CLI, not 9 from node');
  t.match(missing.stderr, `error: cannot read env file ${join(dir, 'nope.env')}: no such file`);
  const bad = await cliProcess(['status'], { cwd: badDir });
  t.equal(bad.code, 2);
  t.match(bad.stderr, `error: ${join(badDir, '.env')}:3: cannot parse this line: expected NAME=value`);
});

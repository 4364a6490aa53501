/**
 * server.ts reads an env file under the environment: the argument (`PATH` or
 * `--env-file PATH`), else ENV_FILE, else ./.env when present; real variables win. A missing explicit
 * file, a line that cannot be parsed, a bad argument or an invalid setting
 * exits 2 with one line naming it (no database needed: it stops before).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

// The built server (turbo builds it before the tests; `pnpm build` before running this file alone):
// a child compiling the TypeScript sources took 40 to 100 s here (docs/testing.md).
const SERVER = fileURLToPath(new URL('../dist/server.js', import.meta.url));

function run(
  args: string[],
  env: Record<string, string>,
  cwd: string,
): Promise<{ code: number | null; output: string }> {
  // `--` before the script, or Node itself would check a `--env-file` argument (docs/cli.md,
  // "Environment files").
  const child = spawn(process.execPath, ['--', SERVER, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

t.test('env files: errors name the file and the line, the real environment wins', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'stage-env-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const badDir = join(dir, 'bad');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(badDir);
  await writeFile(join(badDir, '.env'), '# settings\nPORT=8011\nSTORAGE_DIR /tmp/x\n');
  await writeFile(
    join(dir, 'conf.env'),
    'DATABASE_URL=postgres://u:p@127.0.0.1:1/x\nPORT=eighty\nSTAGE_BODY_LIMIT=10\n',
  );

  // Each child pays the TypeScript loader's start-up: run them together.
  const [badLine, missing, viaEnvFile, viaPositional, badArg, twoFiles] = await Promise.all([
    run([], {}, badDir),
    run(['--env-file', 'nope.env'], {}, dir),
    run([], { ENV_FILE: 'conf.env', PORT: '8011' }, dir),
    run(['conf.env'], { PORT: '8011', ENV_FILE: 'nope.env' }, dir),
    run(['--bogus'], {}, dir),
    run(['a.env', 'b.env'], {}, dir),
  ]);

  t.equal(badLine.code, 2, './.env with a bad line: exit 2');
  t.match(badLine.output, `${join(badDir, '.env')}:3: cannot parse this line: expected NAME=value`);
  t.notMatch(badLine.output, /\n\s+at /, 'no stack trace');

  t.equal(missing.code, 2, 'a missing --env-file: exit 2');
  t.match(missing.output, `cannot read env file ${join(dir, 'nope.env')}: no such file`);

  for (const [name, r] of [
    ['ENV_FILE', viaEnvFile],
    ['the argument (over ENV_FILE)', viaPositional],
  ] as const) {
    t.equal(r.code, 2, `${name}: the file's invalid setting exits 2`);
    t.match(
      r.output,
      /STAGE_BODY_LIMIT must be an integer from 256 to 104857600, got "10"/,
      `${name}: the file was read`,
    );
    t.notMatch(r.output, /PORT must be/, `${name}: the real PORT wins over the file's`);
  }

  t.equal(badArg.code, 2, 'an unknown argument: exit 2');
  t.match(badArg.output, /Unknown option '--bogus'/);
  t.match(badArg.output, /usage: node dist\/server\.js \[ENV_FILE_PATH\]/);
  t.equal(twoFiles.code, 2, 'two env files: exit 2');
  t.match(twoFiles.output, /give one env file/);
});

import t from 'tap';
import { cleanEnv, runCliInProcess, runCliProcess } from './helpers.js';

// The commands run in this process (runCliInProcess: the same runCli the
// program calls); the last test checks that the process itself exits with
// the code runCli returns.

const UNREACHABLE = 'postgres://someone:secret@127.0.0.1:1/nothing';

t.test('--help works for the program and every command, exit 0', async (t) => {
  const top = await runCliInProcess(['--help']);
  t.equal(top.code, 0);
  for (const c of [
    'migrate',
    'retry',
    'cancel',
    'seed',
    'seed-ye',
    'status',
    'verify-trigger',
    'monitor',
    'analyze',
    'listen',
  ]) {
    t.match(top.stdout, new RegExp(`\\b${c}\\b`), `program help lists ${c}`);
  }
  for (const c of ['seed', 'seed-ye', 'monitor', 'analyze', 'status', 'verify-trigger', 'listen']) {
    const r = await runCliInProcess([c, '--help']);
    t.equal(r.code, 0, `${c} --help exits 0`);
    t.match(r.stdout, new RegExp(`Usage: feedly-pipeline ${c}`), `${c} --help shows its usage`);
    t.match(r.stdout, /--env-file <path>/, `${c} takes --env-file`);
  }
});

t.test('bad arguments: an error, a usage line on stderr, exit code 2', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['seed', '--variants-count', 'abc'], /expected a positive integer/],
    [['seed', '--variants-count', '0'], /expected a positive integer/],
    [['seed', '--variants-count', '101'], /at most 100/],
    [['seed', '--bogus'], /unknown option '--bogus'/],
    [['monitor'], /missing required argument 'job_id'/],
    [['monitor', 'not-a-uuid'], /expected a UUID/],
    [['monitor', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a', 'x'], /expected a positive integer/],
    [['monitor', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a', '5', '-1'], /expected a number of seconds/],
    [['verify-trigger', '123'], /expected a UUID/],
    [['verify-trigger', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a', '--timeout', '0'], /seconds > 0/],
    [['analyze'], /exactly one of --job-id and --tenant-id/],
    [['analyze', '--job-id', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a', '--tenant-id', 'x'], /exactly one of/],
    [['retry', 'x'], /expected a UUID/],
    [['cancel'], /missing required argument/],
    [['no-such-command'], /unknown command 'no-such-command'/],
    [[], /Usage: feedly-pipeline/],
  ];
  for (const [args, message] of cases) {
    const r = await runCliInProcess(args, { env: cleanEnv({ DATABASE_URL: UNREACHABLE }) });
    t.equal(r.code, 2, `${args.join(' ') || '(no args)'} exits 2`);
    t.match(r.stderr, message, `${args.join(' ') || '(no args)'} says what is wrong`);
    t.match(r.stderr, /Usage: feedly-pipeline/, `${args.join(' ') || '(no args)'} prints a usage line`);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test('an unreachable database: one clear line, no stack trace, exit 1', async (t) => {
  for (const args of [
    ['seed', '--once'],
    ['seed-ye'],
    ['migrate'],
    ['monitor', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a', '1', '0.2'],
    ['analyze', '--tenant-id', 'x'],
    ['retry', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a'],
    ['cancel', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a'],
    ['verify-trigger', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a'],
  ]) {
    const r = await runCliInProcess(args, { env: cleanEnv({ DATABASE_URL: UNREACHABLE }) });
    t.equal(r.code, 1, `${args[0]} exits 1`);
    const lines = r.stderr.trim().split('\n');
    t.equal(lines.length, 1, `${args[0]}: exactly one line on stderr`);
    t.match(lines[0], /^cannot connect to PostgreSQL at postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/nothing: .+/);
    t.notMatch(r.stderr, /secret/, 'the password is redacted');
  }
  const viaFlag = await runCliInProcess(['seed-ye', '--database-url', UNREACHABLE]);
  t.equal(viaFlag.code, 1, '--database-url is used');
  t.match(viaFlag.stderr, /^cannot connect to PostgreSQL at postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/nothing/);
  const none = await runCliInProcess(['seed-ye']);
  t.equal(none.code, 1, 'no database configured at all');
  t.match(none.stderr, /no database configured: set DATABASE_URL/);
});

t.test('status without a database: every check printed, the database check fails, exit 1', async (t) => {
  const r = await runCliInProcess(['status', '--stage-api-url', 'http://127.0.0.1:1'], {
    env: cleanEnv({ DATABASE_URL: UNREACHABLE }),
  });
  t.equal(r.code, 1);
  t.match(r.stdout, /FAIL stage server http:\/\/127\.0\.0\.1:1\/healthz: not reachable \(ECONNREFUSED\) -> start it/);
  t.match(r.stdout, /FAIL database connection: cannot connect to PostgreSQL/);
  t.match(
    r.stdout,
    /FAIL listener enabled: cannot tell: the stage server at http:\/\/127\.0\.0\.1:1 is not reachable, and the database cannot be reached/,
    "not read from this command's environment",
  );
  t.notMatch(r.stdout + r.stderr, /\n\s+at /, 'no stack trace');
});

t.test('the process exits with the code runCli returns: 0, 1 and 2', async (t) => {
  const help = await runCliProcess(['seed', '--help']);
  t.equal(help.code, 0, '--help: 0');
  t.match(help.stdout, /Usage: feedly-pipeline seed/);
  const usage = await runCliProcess(['monitor', 'not-a-uuid'], { env: cleanEnv({ DATABASE_URL: UNREACHABLE }) });
  t.equal(usage.code, 2, 'a bad argument: 2');
  t.match(usage.stderr, /expected a UUID/);
  t.match(usage.stderr, /Usage: feedly-pipeline/);
  const down = await runCliProcess(['retry', '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a'], {
    env: cleanEnv({ DATABASE_URL: UNREACHABLE }),
  });
  t.equal(down.code, 1, 'an unreachable database: 1');
  t.equal(down.stderr.trim().split('\n').length, 1, 'one line on stderr');
  t.match(down.stderr, /^cannot connect to PostgreSQL at postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/nothing: .+/);
});

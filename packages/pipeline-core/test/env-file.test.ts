/**
 * .env files (src/envFile.ts): Node's parser for the values, our line check
 * for the errors it does not report, the real environment over the file.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EnvFileError, loadEnv, parseEnvFile } from '../src/envFile.js';

t.test('values: quotes, multi-line values, comments, export, the last assignment wins', async (t) => {
  const vars = parseEnvFile(
    [
      '# a comment',
      '',
      'PLAIN=value',
      '  SPACED = 42  ',
      'export EXPORTED=yes',
      'DQ="a # not a comment" # a comment',
      "SQ='single'",
      'MULTI="line one',
      'line two"',
      'EMPTY=',
      'URL=postgres://u:p@h:5432/db?sslmode=require',
      'PLAIN=again',
    ].join('\r\n'),
    'x.env',
  );
  t.same(vars, {
    PLAIN: 'again',
    SPACED: '42',
    EXPORTED: 'yes',
    DQ: 'a # not a comment',
    SQ: 'single',
    MULTI: 'line one\nline two',
    EMPTY: '',
    URL: 'postgres://u:p@h:5432/db?sslmode=require',
  });
});

t.test('a line that cannot be parsed names the file and the line', async (t) => {
  const cases: Array<[string, number, RegExp]> = [
    ['A=1\nthis is not an assignment\n', 2, /expected NAME=value/],
    ['A=1\n\nB 2\n', 3, /expected NAME=value/],
    ['A=1\n1BAD=2\n', 2, /the name before "=" must be/],
    ['A=1\nB-C=2\n', 2, /the name before "=" must be/],
    ['A=1\nB="open\nC=2\n', 2, /quote opened on this line is never closed/],
    ['A=1\nB="x" trailing\n', 2, /unexpected text after the closing "/],
    ['A="x\ny" junk\n', 2, /unexpected text after the closing "/],
    ['=value\n', 1, /the name before "=" must be/],
  ];
  for (const [content, line, why] of cases) {
    const err = t.throws(() => parseEnvFile(content, 'conf/.env')) as EnvFileError;
    t.ok(err instanceof EnvFileError, 'an EnvFileError');
    t.equal(err.line, line, `line ${line} of ${JSON.stringify(content)}`);
    t.match(err.message, new RegExp(`^conf/\\.env:${line}: `), 'the message starts with file:line');
    t.match(err.message, why);
  }
});

t.test('a bad line does not echo its content (it may hold a password)', async (t) => {
  const err = t.throws(() => parseEnvFile('DB_PASSWORD hunter2\n', '.env')) as Error;
  t.notMatch(err.message, /hunter2/);
});

t.test('loadEnv: ./.env when present, an explicit file must exist, the real environment wins', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'feedly-env-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  const none = loadEnv({ cwd: dir, env: { A: 'real' } });
  t.same(none, { env: { A: 'real' }, file: null, applied: [] }, 'no .env: the environment as it is');

  await writeFile(join(dir, '.env'), 'A=from-file\nB=from-file\n');
  const dflt = loadEnv({ cwd: dir, env: { A: 'real' } });
  t.equal(dflt.file, join(dir, '.env'));
  t.same(dflt.env, { A: 'real', B: 'from-file' }, 'the real variable wins; the file fills in the rest');
  t.same(dflt.applied, ['B']);

  await writeFile(join(dir, 'other.env'), 'B=other\n');
  const explicit = loadEnv({ cwd: dir, file: 'other.env', env: {} });
  t.same(explicit.env, { B: 'other' }, 'an explicit file replaces ./.env');

  const missing = t.throws(() => loadEnv({ cwd: dir, file: 'nope.env', env: {} })) as EnvFileError;
  t.match(missing.message, `cannot read env file ${join(dir, 'nope.env')}: no such file`);
  t.throws(() => loadEnv({ cwd: dir, file: dir, env: {} }), /a directory/);

  await writeFile(join(dir, '.env'), 'A=1\nbroken\n');
  const bad = t.throws(() => loadEnv({ cwd: dir, env: {} })) as EnvFileError;
  t.equal(bad.line, 2);
  t.equal(bad.file, join(dir, '.env'));
});

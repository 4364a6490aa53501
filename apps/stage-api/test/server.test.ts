/**
 * server.ts as a process: migrates, listens on HOST/PORT, answers /healthz,
 * exits 0 on SIGTERM; a bad configuration exits 2 with a clear message.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { freePort } from '@feedlyai/test-helpers';
import { tempStorage, testDb, waitFor } from './helpers.js';

// The built server (turbo builds it before the tests; `pnpm build` before running this file alone):
// a child compiling the TypeScript sources took 40 to 100 s here (docs/testing.md).
const SERVER = fileURLToPath(new URL('../dist/server.js', import.meta.url));

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, [SERVER], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

t.test('listens, serves /healthz, shuts down gracefully on SIGTERM', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const port = await freePort();
  const s = start({
    DATABASE_URL: db.url,
    PORT: String(port),
    HOST: '127.0.0.1',
    STORAGE_DIR: storage,
    ENABLE_JOB_STATE_LISTENER: 'false',
    STAGE_CPU_WORKERS: '0',
    LOG_LEVEL: 'info',
  });
  t.teardown(() => {
    if (s.child.exitCode === null) s.child.kill('SIGKILL');
  });
  const health = await waitFor(
    async () => {
      if (s.child.exitCode !== null) throw new Error(`server exited: ${s.output()}`);
      const r = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
      return r?.ok ? await r.json() : null;
    },
    { timeoutMs: 240_000, intervalMs: 200, message: 'server up' },
  );
  t.match(health, { status: 'ok', database: { ok: true } });
  s.child.kill('SIGTERM');
  t.equal(await s.exited, 0, 'exit code 0 after SIGTERM');
  t.match(s.output(), /shutting down/);
});

t.test('invalid configuration: exit 2 with the reason', async (t) => {
  // Both at once: each child pays the TypeScript loader's start-up.
  const s = start({ DATABASE_URL: 'postgres://localhost/x', PORT: 'eighty' });
  const s2 = start({});
  t.equal(await s.exited, 2);
  t.match(s.output(), /invalid stage-api configuration: PORT must be an integer from 0 to 65535, got "eighty"/);
  t.equal(await s2.exited, 2);
  t.match(s2.output(), /no database configured: set DATABASE_URL/);
});

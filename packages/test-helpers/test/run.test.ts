/**
 * One server per test run (docs/testing.md), with a fake tap runner
 * (fixtures/runner.mjs) whose children ask for databases at once: they get
 * the same server and one template build between them, and the server and
 * its folder are gone once the runner has exited, whether its tests failed
 * or it was killed. Folders of runs whose keeper was killed are swept.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import t, { type Test } from 'tap';
import { waitFor } from '../src/index.js';
import { RUN_DIR_PREFIX, runDir } from '../src/run-state.js';

const RUNNER = fileURLToPath(new URL('./fixtures/runner.mjs', import.meta.url));

interface ChildOut {
  database: string;
  url: string;
  port: number;
  migrated: boolean;
  run: { watchPid: number; key: string };
}

async function fakeRun(
  t: Test,
  children: number,
  opts: { childExit?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ runner: ChildProcess; outs: ChildOut[]; codes: number[]; migrations: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'feedly-helpers-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const countFile = join(dir, 'migrations');
  await writeFile(countFile, '');
  const runner = spawn(process.execPath, [RUNNER, String(children), countFile, String(opts.childExit ?? 0)], {
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (runner.exitCode === null && runner.signalCode === null) runner.kill('SIGKILL');
  });
  let out = '';
  runner.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  await waitFor(() => out.includes('\n') || runner.exitCode !== null, {
    timeoutMs: 180_000,
    message: 'the fake run printed its children',
  });
  const results = JSON.parse(out) as Array<{ code: number; out: string }>;
  const migrations = (await readFile(countFile, 'utf8')).split('\n').filter(Boolean).length;
  return {
    runner,
    outs: results.map((r) => JSON.parse(r.out) as ChildOut),
    codes: results.map((r) => r.code),
    migrations,
  };
}

async function reachable(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await c.connect();
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}

const adminUrl = (url: string) => {
  const u = new URL(url);
  u.pathname = '/postgres';
  return u.toString();
};

t.test('files of one run share one server and one template build; it stops when the run ends', async (t) => {
  const { runner, outs, codes, migrations } = await fakeRun(t, 3, { childExit: 1, env: { TEST_DATABASE_URL: '' } });
  t.same(codes, [1, 1, 1], 'every file failed (exit 1)');
  t.equal(new Set(outs.map((o) => o.port)).size, 1, 'one server for the three files');
  t.equal(new Set(outs.map((o) => o.database)).size, 3, 'a database each');
  t.ok(
    outs.every((o) => o.migrated),
    'each database has the migrated schema',
  );
  t.equal(migrations, 1, 'the template was migrated once for the run');
  const run = outs[0]!.run;
  t.equal(run.watchPid, runner.pid, 'the run is the runner process');
  const folder = runDir(run.key);
  t.ok(existsSync(folder), 'the run folder exists while the runner lives');
  t.ok(await reachable(adminUrl(outs[0]!.url)), 'the server is up while the runner lives');

  runner.stdin?.end(); // the runner exits
  await waitFor(async () => !existsSync(folder) && !(await reachable(adminUrl(outs[0]!.url))), {
    timeoutMs: 30_000,
    message: 'server stopped and run folder removed after the run',
  });
  t.pass('server stopped and run folder removed after a run whose tests failed');
});

t.test('a runner killed with SIGKILL: the server is still stopped and its folder removed', async (t) => {
  const { runner, outs } = await fakeRun(t, 1, { env: { TEST_DATABASE_URL: '' } });
  const folder = runDir(outs[0]!.run.key);
  runner.kill('SIGKILL');
  await waitFor(async () => !existsSync(folder) && !(await reachable(adminUrl(outs[0]!.url))), {
    timeoutMs: 30_000,
    message: 'cleaned up after SIGKILL',
  });
  t.pass('cleaned up after SIGKILL');
});

t.test('a new run sweeps the folder of a run whose keeper was killed', async (t) => {
  // A folder as a killed keeper leaves it: a keeper pid that no longer exists, no server running.
  const gone = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => gone.on('close', r));
  const stale = join(tmpdir(), `${RUN_DIR_PREFIX}sweep-test-${process.pid}`);
  await mkdir(join(stale, 'data'), { recursive: true });
  await writeFile(join(stale, 'keeper.pid'), String(gone.pid));
  const old = new Date(Date.now() - 3_600_000);
  await utimes(stale, old, old);
  t.teardown(() => rm(stale, { recursive: true, force: true }));
  const { runner } = await fakeRun(t, 1, { env: { TEST_DATABASE_URL: '' } });
  await waitFor(() => !existsSync(stale), { timeoutMs: 30_000, message: 'stale run folder swept' });
  t.pass('stale run folder swept');
  runner.stdin?.end();
});

const EXTERNAL = process.env.FEEDLY_HELPERS_EXTERNAL_TEST_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const externalUp = await reachable(EXTERNAL);

t.test(
  'TEST_DATABASE_URL: databases on that server, all of the run dropped when it ends',
  { skip: externalUp ? false : `no PostgreSQL at ${EXTERNAL} (FEEDLY_HELPERS_EXTERNAL_TEST_URL names another)` },
  async (t) => {
    const { runner, outs, migrations } = await fakeRun(t, 2, { env: { TEST_DATABASE_URL: EXTERNAL } });
    const ext = new URL(EXTERNAL);
    t.ok(
      outs.every((o) => new URL(o.url).port === (ext.port || '5432')),
      'databases on the given server',
    );
    t.equal(migrations, 1, 'one template for the run');
    const prefix = outs[0]!.database.slice(0, outs[0]!.database.lastIndexOf('_'));
    const admin = new pg.Client({ connectionString: EXTERNAL });
    await admin.connect();
    t.teardown(() => admin.end());
    const count = async () =>
      (
        await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_database WHERE starts_with(datname, $1)', [
          `${prefix}_`,
        ])
      ).rows[0]!.n;
    t.equal(await count(), 3, 'the template and the two databases, left by files that did not close them');
    runner.stdin?.end();
    await waitFor(async () => (await count()) === 0, { timeoutMs: 30_000, message: 'run databases dropped' });
    t.pass("the run's databases are dropped once it ends");
  },
);

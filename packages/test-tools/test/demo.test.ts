/**
 * `pnpm demo` end to end: the built demo (dist/demo/index.js) as a child
 * process, as the README runs it: on its own embedded PostgreSQL, the whole
 * pipeline, the timings, the creatives and the analyzer summary, an HTML
 * report that contains every creative; with `--keep` it then serves until
 * Ctrl-C and stops everything. One run covers both (a run is a whole
 * pipeline on real images: about 15 s of CPU). With DATABASE_URL set it uses
 * that database and starts no PostgreSQL of its own.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { cleanEnv, PACKAGE_DIR, tempDir, waitFor } from './helpers.js';

const DEMO = join(PACKAGE_DIR, 'dist', 'demo', 'index.js');

t.test(
  'on its own embedded PostgreSQL: the whole pipeline, a report with every creative; --keep serves until Ctrl-C, then stops everything',
  async (t) => {
    const dir = await tempDir('feedly-demo-');
    t.teardown(() => dir.remove());
    const report = join(dir.path, 'demo-report.html');
    const child = spawn(process.execPath, [DEMO, '--keep', '--report', report, '--timeout', '240'], {
      cwd: dir.path,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    await waitFor(() => /--keep: stage server on (http:\/\/\S+)/.test(out) || child.exitCode !== null, {
      timeoutMs: 280_000,
      intervalMs: 200,
      message: 'the demo finished its job and keeps serving',
    });
    t.equal(child.exitCode, null, 'still running after the job', { stdout: out, stderr: err });
    t.match(out, /starting an embedded PostgreSQL/);
    t.match(out, /stage server with the listener on http:\/\/127\.0\.0\.1:\d+/);
    t.match(out, /dashboard: http:\/\/127\.0\.0\.1:\d+\/pipeline\/ /, "the dashboard's URL is printed");
    t.match(out, /seeded job [0-9a-f-]{36}: 3 variants/);
    t.match(out, /job [0-9a-f-]{36} done in/);
    t.match(out, /Per-step timings:\n\s+step\s+variant #1\s+variant #2\s+variant #3\s+job/);
    for (const step of ['vlm_analyze', 'iou_eval', 'ad_copy_gen_kor', 'instagram_feed_gen']) {
      t.match(out, new RegExp(`\\n\\s+${step}\\s+\\d`), `a timing for ${step}`);
    }
    t.match(out, /Feed image: \/.+\.(png|jpg)/);
    t.match(out, /Analyzer summary:\n\s+#1/);
    const creatives = [...out.matchAll(/^\s+#(\d)(?: \(chosen\))? (\/\S+\.png)$/gm)];
    t.equal(creatives.length, 3, 'three creatives listed');
    t.equal((out.match(/\(chosen\)/g) ?? []).length >= 1, true, 'the chosen variant is marked');
    t.match(out, /HTML report: /);
    const html = readFileSync(report, 'utf8');
    t.equal((html.match(/<article class="variant/g) ?? []).length, 3, 'three variants in the report');
    for (const [, , path] of creatives) {
      t.ok(html.includes(readFileSync(path as string).toString('base64')), `creative ${path} embedded`);
    }

    const dataDir = (/data in (\S+),/.exec(out) as RegExpExecArray)[1] as string;
    const baseUrl = (/--keep: stage server on (http:\/\/\S+),/.exec(out) as RegExpExecArray)[1] as string;
    const health = await request(`${baseUrl}/healthz`);
    t.equal(health.statusCode, 200, 'the stage server is still up');
    await health.body.dump();
    t.ok(postgresProcesses(dataDir) > 0, 'its PostgreSQL runs');
    const board = (/ {2}dashboard: (http:\/\/127\.0\.0\.1:\d+\/pipeline\/)/.exec(out) as RegExpExecArray)[1] as string;
    const page = await request(board);
    t.equal(page.statusCode, 200, 'the dashboard serves, on 127.0.0.1, without auth');
    t.match(await page.body.text(), /<tr id="job-[0-9a-f-]{36}" class="job st-done">/, 'with the demo job, done');
    child.kill('SIGINT');
    const code = await closed;
    t.equal(code, 0, 'exit 0 after Ctrl-C', { stdout: out, stderr: err });
    t.match(out, /finished in/);
    t.equal(postgresProcesses(dataDir), 0, 'no postgres process of the demo is left');
    t.notOk(existsSync(dataDir), 'its temporary data folder is removed');
  },
);

t.test('DATABASE_URL set: the demo uses that database and starts no PostgreSQL of its own', async (t) => {
  const dir = await tempDir('feedly-demo-url-');
  t.teardown(() => dir.remove());
  const child = spawn(process.execPath, [DEMO, '--timeout', '60'], {
    cwd: dir.path,
    env: cleanEnv({ DATABASE_URL: 'postgres://someone:secret@127.0.0.1:1/nothing' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  t.match(out, /using the database at postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/nothing/, 'the URL, redacted');
  t.notMatch(out, /starting an embedded PostgreSQL/);
  t.equal(code, 1, 'that database cannot be reached: exit 1');
  t.match(err, /demo failed: connect ECONNREFUSED/);
  t.notMatch(out + err, /secret/, 'the password is not printed');
});

function postgresProcesses(dataDir: string): number {
  try {
    return execFileSync('pgrep', ['-af', 'postgres'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(dataDir)).length;
  } catch {
    return 0; // pgrep exits 1 when nothing matches
  }
}

/**
 * `pnpm demo`: the whole pipeline on one machine, from nothing.
 *
 * 1. PostgreSQL: DATABASE_URL / DB_* when set, else an embedded PostgreSQL in a
 *    temporary folder (removed afterwards);
 * 2. migrations;
 * 3. the stage server (buildApp from @feedlyai/stage-api) hosting the listener
 *    plugin, on a free port (or PORT), storage in STORAGE_DIR (.data/storage),
 *    and the dashboard (@feedlyai/dashboard, allowAnonymous, on 127.0.0.1 and a
 *    free port; its URL printed);
 * 4. one job with 3 variants from the bundled coffee photo, marked img_gen/done
 *    the way the YE part does;
 * 5. the monitor until the job is done (with a deadline);
 * 6. per-step timings, the creatives' and the feed image's paths, the analyzer
 *    summary, and the HTML report (.data/demo-report.html).
 *
 * Exits 0 when the job completed, 1 otherwise. `--keep` keeps the server (and
 * the database) running afterwards until Ctrl-C. Everything it started is
 * stopped on the way out, including on Ctrl-C: no orphan postgres process.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve as resolvePath } from 'node:path';
import { AUTOMATIC_STEPS, databaseUrlFromEnv, redactUrl } from '@feedlyai/pipeline-core';
import { createStorage } from '@feedlyai/storage';
import { buildApp } from '@feedlyai/stage-api';
import { createLogUpdate } from 'log-update';
import pg from 'pg';
import { analyzeJobs, flatStageTimings, renderHtml, renderSummary } from '../analyze/index.js';
import { type EmbeddedServer, freePort, startEmbeddedPostgres } from '../db/embedded.js';
import { requireEmbeddedBinary } from '../db/binary.js';
import { startDashboard } from './dashboard.js';
import { describeMigrations, migrateAllSets } from '../migrations.js';
import { formatDuration, type MonitorSnapshot, runMonitor } from '../monitor.js';
import { createPipelineJob } from '../seeder.js';

export interface DemoOptions {
  keep: boolean;
  variants: number;
  /** Deadline for the job, seconds. */
  timeoutS: number;
  reportPath: string;
  storageDir: string;
  imagePath?: string;
  /** Stage server and listener log level (default info). */
  logLevel: string;
  /** Where the server and listener logs go (default .data/demo-server.log). */
  logFile: string;
  env: NodeJS.ProcessEnv;
  out: (line: string) => void;
  err: (line: string) => void;
  isTTY: boolean;
  stdout: NodeJS.WritableStream;
  signal: AbortSignal;
}

interface Closer {
  name: string;
  close: () => Promise<unknown>;
}

type StageApp = Awaited<ReturnType<typeof buildApp>>;

/**
 * Per-step timings table: one row per step; for each variant (and the job,
 * for the job-level steps) two columns, the admission wait and the work that
 * the stage server recorded (stage_run_timings, docs/stage-api.md).
 */
export function timingsTable(
  timings: Array<{ variantOrder: number | null; step: string; waitMs: number | null; workMs: number | null }>,
  variantOrders: number[],
): string {
  const groups = [...variantOrders.map((o) => ({ order: o as number | null, title: `variant #${o}` }))];
  groups.push({ order: null, title: 'job' });
  const rows: string[][] = [['step'], ['', ...groups.flatMap(() => ['wait', 'work'])]];
  for (const step of AUTOMATIC_STEPS) {
    const row: string[] = [step];
    for (const g of groups) {
      const t = timings.find((x) => x.step === step && x.variantOrder === g.order);
      row.push(t ? formatDuration(t.waitMs) : '', t ? formatDuration(t.workMs) : '');
    }
    rows.push(row);
  }
  const widths = (rows[1] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  // The group titles sit above their two columns (wider when the title is).
  for (const [gi, g] of groups.entries()) {
    const i = 1 + gi * 2;
    const span = (widths[i] ?? 0) + 2 + (widths[i + 1] ?? 0);
    if (g.title.length > span) widths[i + 1] = (widths[i + 1] ?? 0) + g.title.length - span;
  }
  const cells = (r: string[]) => `  ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd();
  const header = `  ${'step'.padEnd(widths[0] ?? 0)}  ${groups
    .map((g, gi) => g.title.padEnd((widths[1 + gi * 2] ?? 0) + 2 + (widths[2 + gi * 2] ?? 0)))
    .join('  ')}`.trimEnd();
  return [header, ...rows.slice(1).map(cells)].join('\n');
}

export async function runDemo(o: DemoOptions): Promise<number> {
  const started = Date.now();
  const closers: Closer[] = [];
  const say = (line: string) => o.out(`[demo ${((Date.now() - started) / 1000).toFixed(1)}s] ${line}`);
  let code = 1;
  try {
    // 1. Database.
    let url = databaseUrlFromEnv(o.env);
    let embedded: EmbeddedServer | null = null;
    if (url) {
      say(`using the database at ${redactUrl(url)}`);
    } else {
      // Without a binary for this machine: exit 1 asking for DATABASE_URL (docs/integration.md).
      await requireEmbeddedBinary();
      say('no DATABASE_URL / DB_* set: starting an embedded PostgreSQL');
      embedded = await startEmbeddedPostgres();
      const server = embedded;
      closers.push({ name: 'embedded PostgreSQL', close: () => server.stop() });
      await embedded.createDatabase('feedlyai');
      url = embedded.url('feedlyai');
      say(`embedded PostgreSQL on port ${embedded.port} (data in ${embedded.dataDir}, removed on exit)`);
    }
    if (o.signal.aborted) return 130;

    // 2. Migrations.
    say(`migrations: ${describeMigrations(await migrateAllSets(url))}`);

    // 3. Stage server with the listener.
    await mkdir(dirname(o.logFile), { recursive: true });
    const port = o.env.PORT && o.env.PORT.trim() !== '' ? Number(o.env.PORT) : await freePort();
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid PORT ${o.env.PORT}`);
    const host = '127.0.0.1';
    const baseUrl = `http://${host}:${port}`;
    // The hosted listener calls this very server, with the listener on, whatever the shell says.
    process.env.STAGE_API_URL = baseUrl;
    if (o.env.ENABLE_JOB_STATE_LISTENER && !/^(true|1|yes|on)$/i.test(o.env.ENABLE_JOB_STATE_LISTENER.trim())) {
      say(`ENABLE_JOB_STATE_LISTENER=${o.env.ENABLE_JOB_STATE_LISTENER} ignored: the demo needs the listener`);
    }
    process.env.ENABLE_JOB_STATE_LISTENER = 'true';
    const app: StageApp = await buildApp({
      databaseUrl: url,
      storageDir: o.storageDir,
      host,
      port,
      env: { ...process.env },
      // Server and listener logs go to a file: the live view on the terminal stays readable.
      logger: { level: o.logLevel, file: o.logFile },
      listener: { stageApiUrl: baseUrl, connectionString: url, enabled: true },
      // Models, fonts and worker threads loaded before the job (docs/stage-api.md, "Warm-up").
      warm: true,
    });
    closers.push({ name: 'stage server', close: () => app.close() });
    await app.listen({ host, port });
    say(`stage server with the listener on ${baseUrl} (storage ${o.storageDir}, log ${o.logFile})`);
    if (o.signal.aborted) return 130;
    const board = await startDashboard({ databaseUrl: url, storageDir: o.storageDir, port: await freePort() });
    closers.push({ name: 'dashboard', close: () => board.close() });
    say(`dashboard: ${board.url} (live: open it to watch the job)`);

    // 4. One job.
    const pool = new pg.Pool({ connectionString: url, max: 4, application_name: 'feedly_demo' });
    pool.on('error', () => {});
    closers.push({ name: 'demo pool', close: () => pool.end() });
    const storage = await createStorage({ root: o.storageDir });
    const job = await createPipelineJob(pool, storage, {
      variantsCount: o.variants,
      ...(o.imagePath ? { imagePath: o.imagePath } : {}),
    });
    say(
      `seeded job ${job.jobId}: ${job.variantIds.length} variants from ${job.imageKey}, each marked img_gen/done as the YE part would`,
    );

    // 5. Monitor until done (deadline).
    const intervalS = 0.5;
    const logUpdate = o.isTTY ? createLogUpdate(o.stdout) : null;
    const result = await runMonitor(pool, job.jobId, {
      maxIterations: Math.max(1, Math.ceil(o.timeoutS / intervalS)),
      checkIntervalS: intervalS,
      mode: logUpdate ? 'tty' : 'plain',
      storageDir: o.storageDir,
      write: (t) => o.out(t),
      ...(logUpdate ? { redraw: { draw: (f: string) => logUpdate(f), done: () => logUpdate.done() } } : {}),
      signal: o.signal,
    });
    const last: MonitorSnapshot = result.last;
    if (result.outcome !== 'done') {
      const why =
        result.outcome === 'failed'
          ? `failed: ${last.job.failureReason}`
          : result.outcome === 'interrupted'
            ? 'interrupted (Ctrl-C)'
            : `not done within ${o.timeoutS} s (at ${last.job.step}/${last.job.status})`;
      o.err(`demo: job ${job.jobId} ${why}`);
      for (const v of last.variants) {
        if (v.lastError) o.err(`  variant #${v.order} at ${v.step}/${v.status}: ${v.lastError}`);
      }
      if (last.job.lastError) o.err(`  job at ${last.job.step}/${last.job.status}: ${last.job.lastError}`);
      for (const h of last.hints) o.err(`  hint: ${h}`);
      code = result.outcome === 'interrupted' ? 130 : 1;
    } else {
      // 6. Results.
      const report = await analyzeJobs(pool, { jobId: job.jobId, storageDir: o.storageDir });
      const aj = report.jobs[0];
      if (!aj) throw new Error(`job ${job.jobId} disappeared`);
      o.out('');
      say(`job ${job.jobId} done in ${formatDuration(last.job.elapsedMs)}`);
      o.out('Per-step timings:');
      o.out(
        timingsTable(
          flatStageTimings(aj),
          aj.variants.map((v) => v.order),
        ),
      );
      o.out("  (wait: in the stage server's admission queue; work: from the step's start to its finish)");
      o.out('Creatives:');
      for (const v of aj.variants) {
        o.out(`  #${v.order}${v.chosen ? ' (chosen)' : ''} ${v.overlay?.imagePath ?? '(none)'}`);
      }
      o.out(`Feed image: ${aj.feed?.feedImagePath ?? '(none)'}`);
      o.out('Analyzer summary:');
      o.out(renderSummary(aj));
      const html = await renderHtml(report, (key) => storage.read(key));
      await mkdir(dirname(o.reportPath), { recursive: true });
      await writeFile(o.reportPath, html);
      o.out(`HTML report: ${o.reportPath}`);
      const missing = aj.variants.filter((v) => !v.overlay).length;
      code = missing === 0 && aj.feed ? 0 : 1;
      if (code !== 0) o.err(`demo: ${missing} variant(s) without a creative or no feed post`);
      say(`finished in ${formatDuration(Date.now() - started)}`);
    }

    if (o.keep && !o.signal.aborted) {
      o.out('');
      o.out(`--keep: stage server on ${baseUrl}, database ${redactUrl(url)}`);
      o.out(`  dashboard: ${board.url}`);
      o.out(
        `  try: DATABASE_URL=${url} STAGE_API_URL=${baseUrl} STORAGE_DIR=${o.storageDir} node packages/test-tools/bin/feedly-pipeline.js status`,
      );
      o.out('  Ctrl-C to stop');
      await new Promise<void>((r) => {
        if (o.signal.aborted) r();
        else o.signal.addEventListener('abort', () => r(), { once: true });
      });
    }
    return code;
  } catch (err) {
    o.err(`demo failed: ${(err as Error).message ?? String(err)}`);
    if (o.env.FEEDLY_DEBUG === '1' && (err as Error).stack) o.err((err as Error).stack as string);
    return 1;
  } finally {
    for (const c of closers.reverse()) {
      try {
        await c.close();
      } catch (err) {
        o.err(`demo: closing the ${c.name} failed: ${(err as Error).message}`);
      }
    }
  }
}

export function defaultReportPath(env: NodeJS.ProcessEnv): string {
  return resolvePath(env.DEMO_REPORT ?? '.data/demo-report.html');
}

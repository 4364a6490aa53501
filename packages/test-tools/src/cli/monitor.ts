import { Command } from 'commander';
import { createLogUpdate } from 'log-update';
import { JobNotFoundError, type MonitorMode, renderFrame, runMonitor } from '../monitor.js';
import {
  action,
  CliFailure,
  type CommandContext,
  parsePositiveInt,
  parsePositiveNumber,
  parseUuid,
  resolveStorageDir,
  withDatabase,
} from './common.js';

export function monitorCommand(ctx: CommandContext): Command {
  const cmd = new Command('monitor')
    .description(
      'pipeline monitor: live job and variant states with progress over the 10 steps, step timings, planner and overlay images, ad copy, caption and hashtags, hints when nothing moves',
    )
    .argument('<job_id>', 'the job to watch', parseUuid)
    .argument('[max_iterations]', 'checks before giving up', parsePositiveInt, 120)
    .argument('[check_interval]', 'seconds between checks (fractions allowed)', parsePositiveNumber, 10)
    .option('--json', 'one JSON document per check (NDJSON, one line each); the last line is the final state')
    .option('--plain', 'plain lines (one per change) even on a terminal')
    .option('--storage-dir <dir>', 'where images are stored (default: STORAGE_DIR or .data/storage)')
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .addHelpText(
      'after',
      `
On a terminal the view is redrawn in place; otherwise one line is printed per change.
Exit code 0 when the job is done, 1 when it failed or the iterations ran out.
Examples:
  feedly-pipeline monitor 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a
  feedly-pipeline monitor 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a 600 0.5
  feedly-pipeline monitor 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a 60 1 --json | jq .job.progress`,
    );
  cmd.action(
    action(
      ctx,
      cmd,
      async (
        jobId: string,
        maxIterations: number,
        checkInterval: number,
        opts: { json?: boolean; plain?: boolean; storageDir?: string; databaseUrl?: string },
      ) => {
        const mode: MonitorMode = opts.json ? 'json' : ctx.io.isTTY && !opts.plain ? 'tty' : 'plain';
        return await withDatabase(
          opts,
          ctx.io,
          async (pool) => {
            const logUpdate = mode === 'tty' ? createLogUpdate(ctx.io.stdout) : null;
            try {
              const r = await runMonitor(pool, jobId, {
                maxIterations,
                checkIntervalS: checkInterval,
                mode,
                storageDir: resolveStorageDir(opts.storageDir, ctx.io.env),
                write: (t) => ctx.io.out(t),
                ...(logUpdate ? { redraw: { draw: (f: string) => logUpdate(f), done: () => logUpdate.done() } } : {}),
                signal: ctx.io.signal,
              });
              if (mode !== 'json') {
                if (mode === 'tty' && r.outcome !== 'done') ctx.io.out(renderFrame(r.last).split('\n')[0] ?? '');
                const took = `${(r.last.job.elapsedMs / 1000).toFixed(1)} s`;
                if (r.outcome === 'done') ctx.io.out(`job ${jobId} done in ${took}`);
                else if (r.outcome === 'failed') ctx.io.out(`job ${jobId} failed: ${r.last.job.failureReason}`);
                else if (r.outcome === 'interrupted')
                  ctx.io.out(`stopped after ${r.iterations} check(s); job at ${r.last.job.step}/${r.last.job.status}`);
                else
                  ctx.io.out(`gave up after ${r.iterations} check(s); job at ${r.last.job.step}/${r.last.job.status}`);
              }
              return r.outcome === 'done' ? 0 : 1;
            } catch (err) {
              if (err instanceof JobNotFoundError) throw new CliFailure(err.message);
              throw err;
            }
          },
          // It reads the stage server's result tables.
          { stageTables: true },
        );
      },
    ),
  );
  return cmd;
}

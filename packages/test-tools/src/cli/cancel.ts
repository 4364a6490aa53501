import { cancelJob } from '@feedlyai/pipeline-core';
import { Command } from 'commander';
import { jobProgress, progressLine } from '../seeder.js';
import { action, CliFailure, type CommandContext, parseUuid, withDatabase } from './common.js';

export function cancelCommand(ctx: CommandContext): Command {
  const cmd = new Command('cancel')
    .description("cancel a job: status 'failed', reason 'cancelled'; nothing further is dispatched")
    .argument('<job_id>', 'the job', parseUuid)
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Exit code 1 when the job does not exist or was already finished or failed for good.
Example:
  feedly-pipeline cancel 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a`,
    );
  cmd.action(
    action(ctx, cmd, async (jobId: string, opts: { databaseUrl?: string; json?: boolean }) => {
      return await withDatabase(opts, ctx.io, async (pool) => {
        let r: Awaited<ReturnType<typeof cancelJob>>;
        try {
          r = await cancelJob(pool, jobId);
        } catch (err) {
          if (err instanceof Error && / not found/.test(err.message)) throw new CliFailure(err.message);
          throw err;
        }
        if (opts.json) ctx.io.out(JSON.stringify(r));
        else if (r.cancelled) {
          const p = await jobProgress(pool, jobId);
          ctx.io.out(`cancelled job ${jobId}; nothing further is dispatched`);
          if (p) ctx.io.out(`  now: ${progressLine(p)}`);
        } else {
          ctx.io.out(
            `job ${jobId} not cancelled: it is at ${r.currentStep}/${r.status}${r.failureReason ? ` (${r.failureReason})` : ' (finished)'}`,
          );
        }
        return r.cancelled ? 0 : 1;
      });
    }),
  );
  return cmd;
}

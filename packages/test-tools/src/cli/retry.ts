import { retryJob } from '@feedlyai/pipeline-core';
import { Command } from 'commander';
import { action, CliFailure, type CommandContext, parseUuid, withDatabase } from './common.js';

export function retryCommand(ctx: CommandContext): Command {
  const cmd = new Command('retry')
    .description('retry a failed job (or one failed variant) from its failed step, with a fresh attempt limit')
    .argument('<job_id>', 'the job', parseUuid)
    .option('--variant <job_variants_id>', 'retry only this variant', parseUuid)
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Exit code 1 when nothing was failed (nothing to retry) or the job does not exist.
Examples:
  feedly-pipeline retry 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a
  feedly-pipeline retry 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a --variant 5b7c0f3e-3f1a-4c55-9a53-4c1b0c2f9d11`,
    );
  cmd.action(
    action(ctx, cmd, async (jobId: string, opts: { variant?: string; databaseUrl?: string; json?: boolean }) => {
      return await withDatabase(opts, ctx.io, async (pool) => {
        let r: Awaited<ReturnType<typeof retryJob>>;
        try {
          r = await retryJob(pool, jobId, opts.variant ? { variantId: opts.variant } : {});
        } catch (err) {
          if (err instanceof Error && / not found/.test(err.message)) throw new CliFailure(err.message);
          throw err;
        }
        if (opts.json) ctx.io.out(JSON.stringify(r));
        else if (r.requeued.length === 0) {
          ctx.io.out(`nothing to retry: no failed ${opts.variant ? 'variant' : 'step'} in job ${jobId}`);
        } else {
          for (const q of r.requeued) {
            ctx.io.out(
              `re-queued ${q.jobVariantsId ? `variant ${q.jobVariantsId}` : `job ${jobId}`} at ${q.step} (attempt ${q.attempt})`,
            );
          }
          if (r.previousFailureReason) ctx.io.out(`cleared the job's failure reason (${r.previousFailureReason})`);
        }
        return r.requeued.length > 0 ? 0 : 1;
      });
    }),
  );
  return cmd;
}

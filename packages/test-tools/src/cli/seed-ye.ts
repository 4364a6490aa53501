import { createStorage } from '@feedlyai/storage';
import { Command, Option } from 'commander';
import { type CreatedJob, createYeJob, type SeederSummary, waitForJob } from '../seeder.js';
import {
  action,
  type CommandContext,
  parsePositiveInt,
  parsePositiveNumber,
  resolveStorageDir,
  UsageError,
  withDatabase,
} from './common.js';
import { addJobInputOptions, checkVariants, type JobInputFlags } from './seed.js';

interface SeedYeFlags extends JobInputFlags {
  count?: number;
  once?: boolean;
  waitForCompletion?: boolean;
  timeout: number;
  pollInterval: number;
}

export function seedYeCommand(ctx: CommandContext): Command {
  const cmd = addJobInputOptions(
    new Command('seed-ye').description(
      'YE-part job creator: jobs and variants at user_img_input/done, all variants sharing one image asset; fires nothing downstream',
    ),
  )
    .option('--count <n>', 'how many jobs to create (default 1)', parsePositiveInt)
    .option('--once', 'create one job and stop (as seed --once; the default)')
    .option(
      '--wait-for-completion',
      'as seed: after each job, wait until it is done (instagram_feed_gen/done) or failed before the next one (the YE part must run img_gen meanwhile)',
    )
    .option(
      '--timeout <seconds>',
      'with --wait-for-completion: give up waiting for one job after this long',
      parsePositiveNumber,
      900,
    )
    .addOption(
      new Option('--poll-interval <seconds>', 'how often to check progress while waiting')
        .argParser(parsePositiveNumber)
        .default(0.5)
        .hideHelp(),
    )
    .addHelpText(
      'after',
      `
Exit code 1 when a job waited for failed or did not complete within --timeout.
Examples:
  feedly-pipeline seed-ye --once
  feedly-pipeline seed-ye --tenant-id ye_test_tenant --wait-for-completion
  feedly-pipeline seed-ye --count 5 --variants-count 4 --tenant-id ye_team`,
    );
  cmd.action(
    action(ctx, cmd, async (opts: SeedYeFlags) => {
      checkVariants(opts.variantsCount);
      if (opts.once && opts.count !== undefined && opts.count !== 1) {
        throw new UsageError('--once and --count contradict each other');
      }
      const count = opts.count ?? 1;
      const storageDir = resolveStorageDir(opts.storageDir, ctx.io.env);
      const log = (line: string) => (opts.json ? ctx.io.err(line) : ctx.io.out(line));
      return await withDatabase(opts, ctx.io, async (pool) => {
        const storage = await createStorage({ root: storageDir });
        const summary: SeederSummary = { created: [], completed: 0, failed: 0, timedOut: 0, interrupted: false };
        for (let i = 0; i < count && !ctx.io.signal.aborted; i++) {
          const job: CreatedJob = await createYeJob(pool, storage, {
            tenantId: opts.tenantId,
            variantsCount: opts.variantsCount,
            ...(opts.image !== undefined ? { imagePath: opts.image } : {}),
            ...(opts.descKor !== undefined ? { descKor: opts.descKor } : {}),
            ...(opts.tone !== undefined ? { tone: opts.tone } : {}),
            ...(opts.adCopy !== undefined ? { adCopy: opts.adCopy } : {}),
            ...(opts.tagline !== undefined ? { tagline: opts.tagline } : {}),
          });
          summary.created.push(job);
          log(
            `created job ${job.jobId} at user_img_input/done with ${job.variantIds.length} variants sharing image asset ${job.imageAssetId} (${job.imageKey})`,
          );
          if (!opts.waitForCompletion) continue;
          const startedAt = Date.now();
          const r = await waitForJob(pool, job.jobId, {
            timeoutMs: opts.timeout * 1000,
            intervalMs: opts.pollInterval * 1000,
            signal: ctx.io.signal,
            onProgress: (line) => log(`  ${line}`),
          });
          if (r.outcome === 'done') {
            summary.completed++;
            log(`job ${job.jobId} completed in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
          } else if (r.outcome === 'failed') {
            summary.failed++;
            log(`job ${job.jobId} failed: ${r.progress?.failureReason ?? 'unknown reason'}`);
          } else if (r.outcome === 'timeout') {
            summary.timedOut++;
            log(`job ${job.jobId} did not complete within ${opts.timeout} s`);
          }
        }
        summary.interrupted = ctx.io.signal.aborted;
        if (opts.json) ctx.io.out(JSON.stringify(summary));
        else if (opts.waitForCompletion || summary.interrupted) {
          ctx.io.out(
            `summary: ${summary.created.length} job(s) created` +
              (opts.waitForCompletion
                ? `, ${summary.completed} completed, ${summary.failed} failed, ${summary.timedOut} timed out`
                : '') +
              (summary.interrupted ? ' (stopped by Ctrl-C)' : ''),
          );
        }
        if (summary.interrupted) return 0;
        return summary.failed + summary.timedOut > 0 ? 1 : 0;
      });
    }),
  );
  return cmd;
}

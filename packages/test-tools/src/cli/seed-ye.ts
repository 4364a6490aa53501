import { createStorage } from '@feedlyai/pipeline-core';
import { Command } from 'commander';
import { type CreatedJob, createYeJob } from '../seeder.js';
import { action, type CommandContext, parsePositiveInt, resolveStorageDir, withDatabase } from './common.js';
import { addJobInputOptions, checkVariants, type JobInputFlags } from './seed.js';

export function seedYeCommand(ctx: CommandContext): Command {
  const cmd = addJobInputOptions(
    new Command('seed-ye').description(
      'YE-part job creator: jobs and variants at user_img_input/done, all variants sharing one image asset; fires nothing downstream',
    ),
  )
    .option('--count <n>', 'how many jobs to create', parsePositiveInt, 1)
    .addHelpText(
      'after',
      `
Examples:
  feedly-pipeline seed-ye
  feedly-pipeline seed-ye --count 5 --variants-count 4 --tenant-id ye_team`,
    );
  cmd.action(
    action(ctx, cmd, async (opts: JobInputFlags & { count: number }) => {
      checkVariants(opts.variantsCount);
      const storageDir = resolveStorageDir(opts.storageDir, ctx.io.env);
      return await withDatabase(opts, ctx.io, async (pool) => {
        const storage = await createStorage({ root: storageDir });
        const created: CreatedJob[] = [];
        for (let i = 0; i < opts.count && !ctx.io.signal.aborted; i++) {
          const job = await createYeJob(pool, storage, {
            tenantId: opts.tenantId,
            variantsCount: opts.variantsCount,
            ...(opts.image !== undefined ? { imagePath: opts.image } : {}),
            ...(opts.descKor !== undefined ? { descKor: opts.descKor } : {}),
            ...(opts.tone !== undefined ? { tone: opts.tone } : {}),
            ...(opts.adCopy !== undefined ? { adCopy: opts.adCopy } : {}),
            ...(opts.tagline !== undefined ? { tagline: opts.tagline } : {}),
          });
          created.push(job);
          if (!opts.json) {
            ctx.io.out(
              `created job ${job.jobId} at user_img_input/done with ${job.variantIds.length} variants sharing image asset ${job.imageAssetId} (${job.imageKey})`,
            );
          }
        }
        if (opts.json) ctx.io.out(JSON.stringify({ created }));
        return 0;
      });
    }),
  );
  return cmd;
}

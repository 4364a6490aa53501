import { createStorage } from '@feedlyai/storage';
import { Command, Option } from 'commander';
import {
  DEFAULT_AD_COPY,
  DEFAULT_PRODUCT_NAME,
  DEFAULT_TAGLINE,
  DEFAULT_TENANT,
  DEFAULT_TONE,
  type JobInputOptions,
  jobInputProblems,
  runSeeder,
  type SeederOptions,
} from '../seeder.js';
import {
  action,
  type CommandContext,
  EXIT_USAGE,
  parseNonEmpty,
  parseNonNegativeNumber,
  parsePositiveInt,
  parsePositiveNumber,
  resolveStorageDir,
  UsageError,
  withDatabase,
} from './common.js';

export interface JobInputFlags {
  tenantId: string;
  variantsCount: number;
  image?: string;
  descKor?: string;
  tone?: string;
  adCopy?: string;
  tagline?: string;
  productName?: string;
  storageDir?: string;
  databaseUrl?: string;
  json?: boolean;
}

/** The command-line option of each seeder option with a length cap (INPUT_CAPS, docs/cli-retry.md). */
const CAPPED_FLAGS: Record<string, string> = {
  tenantId: '--tenant-id',
  productName: '--product-name',
  tagline: '--tagline',
  adCopy: '--ad-copy',
  descKor: '--desc-kor',
};

/**
 * Refuses over-long job inputs before the command does anything: the error
 * names the option, exit code 2 (commander's error path, so seed and seed-ye
 * share it).
 */
function checkInputCaps(cmd: Command): void {
  const o = cmd.opts<JobInputFlags>();
  const inputs: JobInputOptions = {
    tenantId: o.tenantId,
    ...(o.descKor !== undefined ? { descKor: o.descKor } : {}),
    ...(o.adCopy !== undefined ? { adCopy: o.adCopy } : {}),
    ...(o.tagline !== undefined ? { tagline: o.tagline } : {}),
    ...(o.productName !== undefined ? { productName: o.productName } : {}),
  };
  const [first] = jobInputProblems(inputs);
  if (first) {
    cmd.error(
      `error: option '${CAPPED_FLAGS[first.option] ?? first.option}' must be at most ${first.cap} characters, got ${first.length}`,
      { exitCode: EXIT_USAGE, code: 'feedly.inputTooLong' },
    );
  }
}

/** The options seed and seed-ye share. */
export function addJobInputOptions(cmd: Command): Command {
  return cmd
    .hook('preAction', (self) => checkInputCaps(self))
    .option('--tenant-id <id>', 'tenant of the created jobs (at most 200 characters)', parseNonEmpty, DEFAULT_TENANT)
    .option('--variants-count <n>', 'variants per job (1-100)', parsePositiveInt, 3)
    .option('--image <path>', 'product image to store (PNG, JPEG or WebP; default: the bundled coffee photo)')
    .option(
      '--desc-kor <text>',
      'Korean product description, at most 2000 characters (default: a hand-drip coffee)',
      parseNonEmpty,
    )
    .option('--tone <code>', `tone style code: friendly, premium, playful, minimal, bold (default: ${DEFAULT_TONE})`)
    .option(
      '--ad-copy <text>',
      `English ad copy, at most 300 characters (default: "${DEFAULT_AD_COPY}")`,
      parseNonEmpty,
    )
    .option('--tagline <text>', `Korean tagline, at most 100 characters (default: "${DEFAULT_TAGLINE}")`, parseNonEmpty)
    .option('--storage-dir <dir>', 'where images are stored (default: STORAGE_DIR or .data/storage)')
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .option('--json', 'print the result as JSON');
}

export function checkVariants(n: number): void {
  if (n > 100) throw new UsageError(`--variants-count must be at most 100, got ${n}`);
}

export function seedCommand(ctx: CommandContext): Command {
  const cmd = addJobInputOptions(
    new Command('seed').description(
      'background job creator: creates jobs (img_gen, queued) with inputs, an image and N variants, then marks each variant img_gen/done as the YE part would',
    ),
  )
    .option(
      '--product-name <text>',
      `product name, at most 100 characters (default: "${DEFAULT_PRODUCT_NAME}")`,
      parseNonEmpty,
    )
    .option('--no-img-gen', 'leave the variants at img_gen/queued (for a real YE part)')
    .option('--once', 'create one job and stop')
    .option(
      '--wait-for-completion',
      'create the next job only after the previous one is done (instagram_feed_gen/done) or failed',
    )
    .option('--create-interval <seconds>', 'seconds between job creations', parseNonNegativeNumber, 60)
    .option('--max-jobs <n>', 'stop after this many jobs', parsePositiveInt)
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
Ctrl-C stops cleanly between jobs (the job being inserted is finished) and prints a summary.
Input caps, in characters (not bytes): --tenant-id 200, --product-name 100, --tagline 100,
--ad-copy 300, --desc-kor 2000; a longer value exits 2 naming the option (docs/cli-retry.md).
Examples:
  feedly-pipeline seed --once
  feedly-pipeline seed --once --wait-for-completion --variants-count 3
  feedly-pipeline seed --wait-for-completion --create-interval 0 --max-jobs 5
  feedly-pipeline seed --once --no-img-gen --image ./product.jpg --tone premium`,
    );
  cmd.action(
    action(
      ctx,
      cmd,
      async (
        opts: JobInputFlags & {
          imgGen: boolean;
          once?: boolean;
          waitForCompletion?: boolean;
          createInterval: number;
          maxJobs?: number;
          timeout: number;
          pollInterval: number;
        },
      ) => {
        checkVariants(opts.variantsCount);
        if (opts.once && opts.maxJobs !== undefined && opts.maxJobs !== 1) {
          throw new UsageError('--once and --max-jobs contradict each other');
        }
        const storageDir = resolveStorageDir(opts.storageDir, ctx.io.env);
        return await withDatabase(opts, ctx.io, async (pool) => {
          const storage = await createStorage({ root: storageDir });
          const so: SeederOptions = {
            tenantId: opts.tenantId,
            variantsCount: opts.variantsCount,
            imgGen: opts.imgGen,
            once: Boolean(opts.once),
            waitForCompletion: Boolean(opts.waitForCompletion),
            createIntervalS: opts.createInterval,
            completionTimeoutS: opts.timeout,
            pollIntervalMs: opts.pollInterval * 1000,
            ...(opts.maxJobs !== undefined ? { maxJobs: opts.maxJobs } : {}),
            ...(opts.image !== undefined ? { imagePath: opts.image } : {}),
            ...(opts.descKor !== undefined ? { descKor: opts.descKor } : {}),
            ...(opts.tone !== undefined ? { tone: opts.tone } : {}),
            ...(opts.adCopy !== undefined ? { adCopy: opts.adCopy } : {}),
            ...(opts.tagline !== undefined ? { tagline: opts.tagline } : {}),
            ...(opts.productName !== undefined ? { productName: opts.productName } : {}),
          };
          const summary = await runSeeder(pool, storage, so, {
            signal: ctx.io.signal,
            log: (line) => (opts.json ? ctx.io.err(line) : ctx.io.out(line)),
          });
          const text =
            `summary: ${summary.created.length} job(s) created` +
            (so.waitForCompletion
              ? `, ${summary.completed} completed, ${summary.failed} failed, ${summary.timedOut} timed out`
              : '') +
            (summary.interrupted ? ' (stopped by Ctrl-C)' : '');
          if (opts.json) ctx.io.out(JSON.stringify(summary));
          else ctx.io.out(text);
          if (summary.interrupted) return 0;
          return summary.failed + summary.timedOut > 0 ? 1 : 0;
        });
      },
    ),
  );
  return cmd;
}

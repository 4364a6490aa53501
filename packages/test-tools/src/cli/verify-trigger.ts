import { Command } from 'commander';
import { VariantNotFoundError, type VariantSnapshot, verifyTrigger } from '../verify.js';
import { action, CliFailure, type CommandContext, parsePositiveNumber, parseUuid, withDatabase } from './common.js';

const fmt = (s: VariantSnapshot) => `${s.current_step}/${s.status} (attempt ${s.attempt})`;

export function verifyTriggerCommand(ctx: CommandContext): Command {
  const cmd = new Command('verify-trigger')
    .description(
      'img_gen trigger test: set the variant to img_gen/done and check that the pipeline moves it on to vlm_analyze',
    )
    .argument('<job_variants_id>', 'the variant to mark img_gen/done', parseUuid)
    .option('--timeout <seconds>', 'how long to wait for vlm_analyze', parsePositiveNumber, 10)
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nExit code 0 when the variant moved on, 1 when it did not.\nExample:\n  feedly-pipeline verify-trigger 5b7c0f3e-3f1a-4c55-9a53-4c1b0c2f9d11 --timeout 10',
    );
  cmd.action(
    action(ctx, cmd, async (variantId: string, opts: { timeout: number; databaseUrl?: string; json?: boolean }) => {
      return await withDatabase(opts, ctx.io, async (pool) => {
        let r: Awaited<ReturnType<typeof verifyTrigger>>;
        try {
          r = await verifyTrigger(pool, variantId, { timeoutMs: opts.timeout * 1000 });
        } catch (err) {
          if (err instanceof VariantNotFoundError) throw new CliFailure(err.message);
          throw err;
        }
        if (opts.json) {
          ctx.io.out(JSON.stringify(r));
        } else {
          ctx.io.out(`before: ${fmt(r.before)}`);
          ctx.io.out(`set:    ${fmt(r.marked)}`);
          ctx.io.out(`after:  ${fmt(r.after)} (${(r.elapsedMs / 1000).toFixed(1)} s later)`);
          ctx.io.out(
            r.moved
              ? `OK: the pipeline picked the variant up (${r.after.current_step}/${r.after.status})`
              : `FAIL: the variant did not move to vlm_analyze within ${opts.timeout} s -> run feedly-pipeline status (is the listener running? is the trigger there?)`,
          );
        }
        return r.moved ? 0 : 1;
      });
    }),
  );
  return cmd;
}

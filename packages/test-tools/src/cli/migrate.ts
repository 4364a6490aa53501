import { LATEST_MIGRATION, migrate } from '@feedlyai/pipeline-core';
import { Command } from 'commander';
import { action, type CommandContext, withDatabase } from './common.js';

export function migrateCommand(ctx: CommandContext): Command {
  const cmd = new Command('migrate')
    .description('apply the schema migrations (additive, safe to run concurrently) to the database')
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .option(
      '--reapply',
      're-run every migration (they are idempotent): re-creates dropped trigger functions and triggers',
    )
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  feedly-pipeline migrate\n  feedly-pipeline migrate --reapply   # after a trigger or function was dropped',
    );
  cmd.action(
    action(ctx, cmd, async (opts: { databaseUrl?: string; json?: boolean; reapply?: boolean }) => {
      return await withDatabase(
        opts,
        ctx.io,
        async (pool) => {
          if (opts.reapply) {
            // Every migration is additive and idempotent (IF NOT EXISTS, CREATE OR REPLACE):
            // forgetting that they ran makes migrate() apply them all again, under its lock.
            await pool.query('DELETE FROM feedly_migrations').catch((err: { code?: string }) => {
              if (err.code !== '42P01') throw err; // no table yet: a first migration anyway
            });
          }
          const r = await migrate(pool);
          if (opts.json) ctx.io.out(JSON.stringify({ ...r, latest: LATEST_MIGRATION }));
          else if (r.applied.length) ctx.io.out(`applied migration(s) ${r.applied.join(', ')}; schema at ${r.current}`);
          else ctx.io.out(`nothing to apply; schema at ${r.current}`);
          return 0;
        },
        { requireSchema: false },
      );
    }),
  );
  return cmd;
}

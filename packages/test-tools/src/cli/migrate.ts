import { CORE_MIGRATION_SET, LATEST_MIGRATION, latestMigration, migrate } from '@feedlyai/pipeline-core';
import { Command } from 'commander';
import { MIGRATION_SETS } from '../migrations.js';
import { action, type CommandContext, withDatabase } from './common.js';

export function migrateCommand(ctx: CommandContext): Command {
  const cmd = new Command('migrate')
    .description(
      "apply the schema migrations (additive, safe to run concurrently) to the database: the engine's set, then the stage server's",
    )
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
          const sets = [];
          for (const set of MIGRATION_SETS) {
            if (opts.reapply) {
              // Every migration is additive and idempotent (IF NOT EXISTS, CREATE OR REPLACE):
              // forgetting that they ran makes migrate() apply them all again, under its lock.
              await pool.query(`DELETE FROM ${set.trackingTable}`).catch((err: { code?: string }) => {
                if (err.code !== '42P01') throw err; // no table yet: a first migration anyway
              });
            }
            const r = await migrate(pool, { set });
            sets.push({ ...r, latest: latestMigration(set) });
          }
          if (opts.json) {
            // The engine's set at the top (as before there were two sets), every set under `sets`.
            const core = sets.find((s) => s.set === CORE_MIGRATION_SET.name);
            ctx.io.out(
              JSON.stringify({ applied: core?.applied, current: core?.current, latest: LATEST_MIGRATION, sets }),
            );
          } else {
            for (const r of sets) {
              ctx.io.out(
                `${r.set}: ${r.applied.length ? `applied migration(s) ${r.applied.join(', ')}` : 'nothing to apply'}; schema at ${r.current}`,
              );
            }
          }
          return 0;
        },
        { requireSchema: false },
      );
    }),
  );
  return cmd;
}

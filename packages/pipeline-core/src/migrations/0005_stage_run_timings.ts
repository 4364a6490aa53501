/**
 * 0005: moved. The stage server's stage_run_timings table was created here;
 * it is now migration 2 of the stage server's own set (apps/stage-api,
 * src/migrations/0002_stage_run_timings.ts, tracking table
 * stage_api_migrations).
 *
 * The id stays in this set: a database migrated before the move has it
 * recorded, and a new database records it without running anything
 * (docs/migrations.md).
 */
export const name = 'stage_run_timings';

/** Empty: the migrator only records the id. */
export const sql = '';

/**
 * 0002: moved. The stage server's result tables were created here; they are
 * now migration 1 of the stage server's own set (apps/stage-api,
 * src/migrations/0001_stage_results.ts, tracking table stage_api_migrations).
 *
 * The id stays in this set: a database migrated before the move has it
 * recorded, and a new database records it without running anything
 * (docs/migrations.md).
 */
export const name = 'stage_results';

/** Empty: the migrator only records the id. */
export const sql = '';

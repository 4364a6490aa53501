/**
 * The stage server's migration set (docs/migrations.md): its result tables
 * and stage_run_timings, with ids of their own, recorded in
 * stage_api_migrations, applied by pipeline-core's `migrate()` after the
 * engine's set (these tables reference jobs and jobs_variants). The server
 * applies it at boot; `feedly-pipeline migrate` applies both sets.
 *
 * SQL is compiled into the package (no .sql files read at run time). Append
 * new ones; never edit or renumber one that has been released.
 */
import type { MigrationSet } from '@feedlyai/pipeline-core';
import * as m0001 from './0001_stage_results.js';
import * as m0002 from './0002_stage_run_timings.js';

export const STAGE_MIGRATION_SET: MigrationSet = {
  name: 'stage-api',
  trackingTable: 'stage_api_migrations',
  migrations: [
    { id: 1, name: m0001.name, sql: m0001.sql },
    { id: 2, name: m0002.name, sql: m0002.sql },
  ],
  lockKey: [0x0feed1a1, 2],
};

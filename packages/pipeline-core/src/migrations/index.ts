import * as m0001 from './0001_core.js';
import * as m0002 from './0002_stage_results.js';
import * as m0003 from './0003_dispatch_requests.js';
import * as m0004 from './0004_healing.js';
import * as m0005 from './0005_stage_run_timings.js';
import * as m0006 from './0006_dashboard_pages.js';
import * as m0007 from './0007_dashboard_variant_steps.js';
import * as m0008 from './0008_step_status_statistics.js';

export interface Migration {
  /** Sequential number, starting at 1. Never renumber a released migration. */
  id: number;
  name: string;
  sql: string;
}

/**
 * pipeline-core's set (CORE_MIGRATION_SET in migrate.ts, tracking table
 * feedly_migrations): only the engine's tables. 2 and 5 moved to the stage
 * server's own set and stay here as ids with empty SQL (docs/migrations.md).
 * SQL is compiled into the package (no .sql files read at run time). Append
 * new ones; never edit, renumber or reuse one that has been released.
 */
export const MIGRATIONS: readonly Migration[] = [
  { id: 1, name: m0001.name, sql: m0001.sql },
  { id: 2, name: m0002.name, sql: m0002.sql },
  { id: 3, name: m0003.name, sql: m0003.sql },
  { id: 4, name: m0004.name, sql: m0004.sql },
  { id: 5, name: m0005.name, sql: m0005.sql },
  { id: 6, name: m0006.name, sql: m0006.sql },
  { id: 7, name: m0007.name, sql: m0007.sql },
  { id: 8, name: m0008.name, sql: m0008.sql },
];

/**
 * Both migration sets of the workspace (docs/migrations.md): the engine's
 * (pipeline-core) and the stage server's (apps/stage-api), in the order they
 * are applied (the stage server's tables reference the engine's).
 * `feedly-pipeline migrate`, the demo and `pnpm dev` apply both.
 */
import {
  CORE_MIGRATION_SET,
  type MigrateOptions,
  type MigrateResult,
  type MigrationSet,
  migrate,
} from '@feedlyai/pipeline-core';
import { STAGE_MIGRATION_SET } from '@feedlyai/stage-api/migrations';
import type pg from 'pg';

export { STAGE_MIGRATION_SET };

export const MIGRATION_SETS: readonly MigrationSet[] = [CORE_MIGRATION_SET, STAGE_MIGRATION_SET];

/** Applies every set, one after the other; one result per set. */
export async function migrateAllSets(
  target: pg.Pool | pg.ClientBase | string,
  options: Omit<MigrateOptions, 'set' | 'upTo'> = {},
): Promise<MigrateResult[]> {
  const results: MigrateResult[] = [];
  for (const set of MIGRATION_SETS) results.push(await migrate(target, { ...options, set }));
  return results;
}

/** One line per set: "pipeline-core: applied 1, 2 (at 6)", "stage-api: nothing to apply (at 2)". */
export function describeMigrations(results: readonly MigrateResult[]): string {
  return results
    .map(
      (r) => `${r.set}: ${r.applied.length ? `applied ${r.applied.join(', ')}` : 'nothing to apply'} (at ${r.current})`,
    )
    .join('; ');
}

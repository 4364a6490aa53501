/**
 * Whether the stage server's result tables are in this database (its own
 * migration set, docs/architecture.md): the jobs page shows the chosen
 * creative from them, and leaves it out on a database where only the engine
 * was migrated. Asked again every minute until they appear.
 */
import type { Queryable } from '@feedlyai/pipeline-core';

const RECHECK_MS = 60_000;

export class StageTables {
  private present = false;
  private checkedAt = 0;

  async available(db: Queryable): Promise<boolean> {
    if (this.present || Date.now() - this.checkedAt < RECHECK_MS) return this.present;
    const r = await db.query<{ ok: boolean }>(
      `SELECT to_regclass('stage_instagram_feeds') IS NOT NULL AND to_regclass('stage_overlays') IS NOT NULL AS ok`,
    );
    this.present = r.rows[0]?.ok === true;
    this.checkedAt = Date.now();
    return this.present;
  }
}

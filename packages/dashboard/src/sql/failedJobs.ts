/**
 * The failed jobs a bulk retry acts on (docs/dashboard.md, "Actions"): the
 * jobs page's filters with the status "failed", cancelled jobs left out (an
 * operator cancelled them on purpose, as `feedly-pipeline retry
 * --failed-since` leaves them out), oldest failure first, at most `limit`.
 */
import type { Queryable } from '@feedlyai/pipeline-core';
import type { JobFilters } from '../filters.js';
import { filterClauses } from './jobsPage.js';

export interface FailedSelection {
  jobIds: string[];
  /** More failed jobs match than `limit`: another action retries the rest. */
  more: boolean;
}

export async function selectFailedJobs(db: Queryable, f: JobFilters, limit: number): Promise<FailedSelection> {
  if (f.status !== null && f.status !== 'failed') return { jobIds: [], more: false };
  const params: unknown[] = [];
  const where = filterClauses({ ...f, status: 'failed' }, params).concat(`j.failure_reason <> 'cancelled'`);
  params.push(limit + 1);
  const { rows } = await db.query<{ job_id: string }>(
    `SELECT j.job_id::text AS job_id FROM jobs j WHERE ${where.join(' AND ')}
      ORDER BY j.failed_at, j.job_id LIMIT $${params.length}`,
    params,
  );
  return { jobIds: rows.slice(0, limit).map((r) => r.job_id), more: rows.length > limit };
}

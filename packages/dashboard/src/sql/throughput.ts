/**
 * Throughput (docs/dashboard.md, "Throughput"): steps and failures per minute
 * for the last hour, from the run log (pipeline_step_runs), by the minute its
 * dispatch finished. A step is a run that `succeeded`; a failure is one that
 * counts against the step's attempts: `failed` (the stage recorded it),
 * `rejected` (400/422) and `timeout`. Conflicts, service failures and runs of
 * a stopped instance are neither. Read through the BRIN index of migration
 * 0006 on finished_at.
 */
import type { Queryable } from '@feedlyai/pipeline-core';

export const THROUGHPUT_MINUTES = 60;
export const FAILURE_STATES = ['failed', 'rejected', 'timeout'] as const;

export interface Throughput {
  /** The start of each minute, seconds since the epoch, oldest first (60 of them, the current minute last). */
  minutes: number[];
  steps: number[];
  failures: number[];
}

export async function throughput(db: Queryable): Promise<Throughput> {
  const { rows } = await db.query<{ minute: string; steps: number; failures: number }>(
    `WITH bounds AS (SELECT date_trunc('minute', now()) - make_interval(mins => $1 - 1) AS since)
     SELECT extract(epoch FROM g.minute)::bigint::text AS minute,
            coalesce(r.steps, 0)::int AS steps, coalesce(r.failures, 0)::int AS failures
       FROM bounds b
      CROSS JOIN LATERAL generate_series(b.since, date_trunc('minute', now()), interval '1 minute') AS g(minute)
       LEFT JOIN (
         SELECT date_trunc('minute', finished_at) AS minute,
                count(*) FILTER (WHERE state = 'succeeded') AS steps,
                count(*) FILTER (WHERE state = ANY($2::text[])) AS failures
           FROM pipeline_step_runs, bounds b
          WHERE finished_at >= b.since
          GROUP BY 1
       ) r ON r.minute = g.minute
      ORDER BY g.minute`,
    [THROUGHPUT_MINUTES, FAILURE_STATES],
  );
  return {
    minutes: rows.map((r) => Number(r.minute)),
    steps: rows.map((r) => r.steps),
    failures: rows.map((r) => r.failures),
  };
}

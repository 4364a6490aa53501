// The run log's outcome writer: outcomes batched into one statement, written
// early when a batch is full, kept and retried when a write fails, reported
// and dropped only on the final flush.
import t from 'tap';
import type { Queryable } from '../src/db.js';
import { claimVariants } from '../src/sql/claimVariant.js';
import { RunLogWriter } from '../src/sql/stepRuns.js';
import { seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

/** Claims `n` variants and returns their run ids. */
async function runs(n: number): Promise<string[]> {
  const s = await seedJob(db.pool, { variants: n, variantStep: 'planner', variantStatus: 'done' });
  const claimed = await claimVariants(db.pool, {
    items: s.variantIds.map((id) => ({ jobVariantsId: id, prev: 'planner' as const })),
    trigger: 'notify',
    instanceId: 'run-log-test',
  });
  return claimed.map((c) => c.runId);
}

async function states(ids: string[]): Promise<Array<Record<string, unknown>>> {
  const r = await db.pool.query(
    `SELECT run_id::text, state, http_status, duration_ms, error, finished_at IS NOT NULL AS finished
       FROM pipeline_step_runs WHERE run_id = ANY($1::bigint[]) ORDER BY run_id`,
    [ids],
  );
  return r.rows;
}

/** The pool, with a switch that makes every query fail (the database away). */
function flaky(): { db: Queryable; down: boolean; statements: number } {
  const state = {
    down: false,
    statements: 0,
    db: {
      query: (async (...args: unknown[]) => {
        state.statements++;
        if (state.down) throw new Error('connection terminated');
        return (db.pool.query as (...a: unknown[]) => Promise<unknown>)(...args);
      }) as unknown as Queryable['query'],
    } as Queryable,
  };
  return state;
}

t.test('outcomes are written together, each with its own state, status, duration and error', async (t) => {
  const ids = await runs(3);
  const f = flaky();
  const w = new RunLogWriter(f.db, { flushMs: 60_000, maxBatch: 100, onError: () => t.fail('no error expected') });
  w.add({ runId: ids[0]!, state: 'succeeded', httpStatus: 200, durationMs: 12.4 });
  w.add({ runId: ids[1]!, state: 'failed', httpStatus: 500, durationMs: 30, error: 'model timed out' });
  w.add({ runId: ids[2]!, state: 'timeout', httpStatus: null, durationMs: 2000, error: 'x'.repeat(5000) });
  t.equal(w.pending, 3, 'buffered');
  await w.flush();
  t.equal(f.statements, 1, 'one statement for the three');
  const rows = await states(ids);
  t.match(rows, [
    { state: 'succeeded', http_status: 200, duration_ms: 12, error: null, finished: true },
    { state: 'failed', http_status: 500, duration_ms: 30, error: 'model timed out', finished: true },
    { state: 'timeout', http_status: null, duration_ms: 2000, finished: true },
  ]);
  t.equal(String(rows[2]?.error).length, 4000, 'long errors are cut to 4000 characters');
});

t.test('a full batch is written without waiting for the timer', async (t) => {
  const ids = await runs(4);
  const w = new RunLogWriter(db.pool, { flushMs: 60_000, maxBatch: 4, onError: () => t.fail('no error expected') });
  for (const id of ids) w.add({ runId: id, state: 'succeeded', httpStatus: 200, durationMs: 1 });
  await waitFor(async () => (await states(ids)).every((r) => r.state === 'succeeded'), {
    timeoutMs: 10_000,
    message: 'written at the fourth outcome',
  });
  t.equal(w.pending, 0);
});

t.test('a failed write is kept and retried; only the final flush reports and drops', async (t) => {
  const ids = await runs(2);
  const f = flaky();
  const errors: number[] = [];
  const w = new RunLogWriter(f.db, {
    flushMs: 10,
    maxBatch: 100,
    retryMs: 50,
    onError: (_e, lost) => errors.push(lost),
  });
  f.down = true;
  w.add({ runId: ids[0]!, state: 'succeeded', httpStatus: 200, durationMs: 5 });
  await waitFor(() => f.statements >= 2, { timeoutMs: 10_000, message: 'retried while the database is away' });
  t.equal(w.pending, 1, 'still kept');
  f.down = false;
  await waitFor(async () => (await states([ids[0]!]))[0]?.state === 'succeeded', {
    timeoutMs: 10_000,
    message: 'written once the database is back',
  });
  t.same(errors, [], 'nothing reported while it could still be written');
  f.down = true;
  w.add({ runId: ids[1]!, state: 'succeeded', httpStatus: 200, durationMs: 5 });
  await w.flush({ final: true });
  t.same(errors, [1], 'the final flush reports what it could not write');
  t.equal(w.pending, 0, 'and keeps nothing (no timer left behind)');
  t.match(await states([ids[1]!]), [{ state: 'dispatched', finished: false }]);
});

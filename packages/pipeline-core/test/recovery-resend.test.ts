// A sweep's "send my own queued row again" (docs/healing.md, "queued rows of a
// live claimer") has no guard in the database, so it must not act on a read
// that became stale while it waited for a capacity slot: the flight that was
// delivering the attempt may have ended meanwhile (the stage already ran it,
// and a second request would reach it as a duplicate, answered 409).
import t from 'tap';
import { Capacity } from '../src/engine/capacity.js';
import { Circuits } from '../src/engine/circuits.js';
import type { Decision } from '../src/engine/decide.js';
import { Recovery } from '../src/engine/recovery.js';
import { silentLogger } from '../src/logger.js';
import type { RecoveryRow } from '../src/sql/recoveryScan.js';
import { STEP_GRAPH, type Step } from '../src/steps.js';
import { seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

const SELF = 'instance-self';

function harness() {
  const urlOf = (_step: Step) => 'http://127.0.0.1:1';
  const circuits = new Circuits(urlOf, STEP_GRAPH, silentLogger, { halfOpen: () => {}, closed: () => {} });
  // One slot in all: whoever holds it makes the sweep wait.
  const capacity = new Capacity(
    1,
    (step) => circuits.of(step),
    urlOf,
    () => false,
  );
  const acted: Array<{ row: RecoveryRow; d: Decision }> = [];
  let flightEnded = false;
  let inFlightCalls = 0;
  const recovery = new Recovery({
    pool: db.pool,
    graph: STEP_GRAPH,
    fanInPolicy: 'all',
    self: SELF,
    deadAfterMs: 10_000,
    windowSeconds: 86_400,
    minRescueAfterMs: 60_000,
    log: silentLogger,
    capacity,
    circuits,
    closing: () => false,
    // The flight of the row's attempt: not known to this instance when the sweep reads the
    // page; in the first test it ends while the sweep waits for the slot.
    inFlight: () => {
      inFlightCalls++;
      return flightEnded;
    },
    act: async (row, d, slot) => {
      acted.push({ row, d });
      slot?.release();
      return true;
    },
    claimNextBatch: async (_prev, _rows, slots) => {
      for (const s of slots) s.release();
      return 0;
    },
    fanIn: async (_jobId, _hasSuccess, slot) => {
      slot?.release();
      return false;
    },
  });
  return {
    recovery,
    capacity,
    acted,
    endFlight: () => {
      flightEnded = true;
    },
    get inFlightCalls() {
      return inFlightCalls;
    },
  };
}

async function ownQueuedRow(): Promise<string> {
  const s = await seedJob(db.pool, { variants: 1, variantStep: 'vlm_analyze', variantStatus: 'queued' });
  const id = s.variantIds[0] as string;
  await db.pool.query(`UPDATE jobs_variants SET claimed_by = $2, attempt = 1 WHERE job_variants_id = $1`, [id, SELF]);
  return id;
}

t.test('a flight that ended while the sweep waited for a slot is not sent again', async (t) => {
  await db.pool.query('TRUNCATE jobs CASCADE');
  const id = await ownQueuedRow();
  const h = harness();
  // The only slot is busy: the sweep decides "send again" from its read, then waits.
  const held = h.capacity.take('vlm_analyze');
  t.ok(held, 'the one slot is taken');
  const sweep = h.recovery.sweep({ fresh: true });
  await waitFor(() => h.capacity.waiting === 1, { timeoutMs: 10_000, message: 'the sweep waits for the slot' });
  // Meanwhile the flight ends (the stage ran the attempt) and frees its slot.
  h.endFlight();
  held?.release();
  await sweep;
  t.same(
    h.acted.filter((a) => a.row.jobVariantsId === id),
    [],
    'no re-send: the read was older than the flight end',
  );
  t.equal(h.capacity.inUse, 0, 'the slot went back');
});

t.test('an own queued row with no flight is sent again (same attempt)', async (t) => {
  await db.pool.query('TRUNCATE jobs CASCADE');
  const id = await ownQueuedRow();
  const h = harness();
  await h.recovery.sweep({ fresh: true });
  const mine = h.acted.filter((a) => a.row.jobVariantsId === id);
  t.equal(mine.length, 1, 'sent once');
  t.equal(mine[0]?.d.kind, 'resend-own');
  t.equal(mine[0]?.row.attempt, 1, 'the same attempt');
});

// Malformed notifications are logged, counted and skipped; the listener stays up.
import t from 'tap';
import { startFakeStage } from './fake-stage.js';
import { buildApp, markImgGenDone, seedJob, testDb, waitFor } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

t.test(
  'bad JSON, unknown step, nonexistent ids and a huge payload are skipped; the listener keeps working',
  async (t) => {
    const stage = await startFakeStage(db.pool);
    t.teardown(() => stage.close());
    const { app, logs } = await buildApp({
      connectionString: db.url,
      stageApiUrl: stage.url,
      recoveryIntervalMs: 3_600_000,
    });
    t.teardown(() => app.close());
    await waitFor(() => app.jobStateListener.status().connected, { timeoutMs: 30_000 });
    const ghost = '11111111-1111-4111-8111-111111111111';
    const payloads: Array<[string, string]> = [
      ['job_variant_state_changed', '{not json'],
      [
        'job_variant_state_changed',
        JSON.stringify({ job_variants_id: ghost, job_id: ghost, current_step: 'teleport', status: 'done' }),
      ],
      [
        'job_variant_state_changed',
        JSON.stringify({ job_variants_id: 'not-a-uuid', job_id: ghost, current_step: 'planner', status: 'done' }),
      ],
      [
        'job_variant_state_changed',
        JSON.stringify({ job_variants_id: ghost, job_id: ghost, current_step: 'planner', status: 'done' }),
      ],
      [
        'job_variant_state_changed',
        JSON.stringify({
          job_variants_id: ghost,
          job_id: ghost,
          current_step: 'planner',
          status: 'done',
          pad: 'x'.repeat(7800),
        }),
      ],
      ['job_state_changed', '[]'],
      ['job_state_changed', JSON.stringify({ job_id: ghost, current_step: 'ad_copy_gen_kor', status: 'done' })],
      ['job_state_changed', 'null'],
    ];
    for (const [channel, payload] of payloads) await db.pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    await waitFor(() => (app.jobStateListener.status().events ?? 0) >= payloads.length, { timeoutMs: 30_000 });
    const st = app.jobStateListener.status();
    t.equal(st.invalid, 5, 'five malformed payloads counted (bad JSON, unknown step, bad uuid, [], null)');
    t.ok((st.skips ?? 0) >= 5);
    t.equal(st.dispatches, 0, 'nothing dispatched for ids that do not exist');
    t.ok(st.connected, 'still connected');
    const warn = logs.filter((l) => l.msg === 'listener error: malformed notification skipped');
    t.equal(warn.length, 5);
    t.match(warn[0], { channel: 'job_variant_state_changed', error: /bad JSON/ });
    // And a real transition right after still goes through.
    const s = await seedJob(db.pool, { variants: 1 });
    await markImgGenDone(db.pool, s.variantIds);
    await waitFor(() => stage.calls('vlm_analyze', s.variantIds[0]).length === 1, { timeoutMs: 30_000 });
    t.pass('listener still dispatches');
  },
);

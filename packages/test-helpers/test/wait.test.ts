import t from 'tap';
import { waitFor } from '../src/index.js';

t.test('without intervalMs the checks start 10 ms apart and slow down to 200 ms', async (t) => {
  const started = performance.now();
  let checks = 0;
  const seen = await waitFor(
    () => {
      checks++;
      return performance.now() - started >= 1_000 ? checks : 0;
    },
    { timeoutMs: 5_000 },
  );
  // 10, 15, 22.5, ... ms, capped at 200: about 11 checks in a second, where a fixed 25 ms made 40.
  t.ok(seen >= 3 && seen <= 14, `${seen} checks in one second`);
});

t.test('a condition that holds soon is seen soon', async (t) => {
  const started = performance.now();
  await waitFor(() => performance.now() - started >= 30, { timeoutMs: 5_000 });
  const took = performance.now() - started;
  t.ok(took < 500, `seen ${Math.round(took)} ms after the start (it held after 30 ms)`);
});

t.test('a fixed intervalMs is kept; the deadline ends the wait with the message and the last error', async (t) => {
  let checks = 0;
  await t.rejects(
    waitFor(
      () => {
        checks++;
        throw new Error('not yet');
      },
      { timeoutMs: 300, intervalMs: 50, message: 'the thing' },
    ),
    /waitFor timed out after 300 ms \(the thing\): last error not yet/,
  );
  t.ok(checks >= 5 && checks <= 8, `${checks} checks 50 ms apart in 300 ms`);
});

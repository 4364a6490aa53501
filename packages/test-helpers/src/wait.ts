/** The first pause between two checks, and the longest one, when no `intervalMs` is given. */
const FIRST_INTERVAL_MS = 10;
const MAX_INTERVAL_MS = 200;

/**
 * Polls `fn` until it returns a truthy value or the deadline passes (no fixed
 * sleeps). Without `intervalMs` the pause grows from 10 ms by half each check
 * up to 200 ms: a condition that holds soon is seen soon, and a long wait (a
 * job going through its steps, often a query per check) costs 5 checks a
 * second instead of 40 (the CPU of a whole test run, docs/testing.md). A fixed
 * `intervalMs` is kept as given.
 */
export async function waitFor<T>(
  fn: () => Promise<T> | T,
  opts: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let interval = opts.intervalMs ?? FIRST_INTERVAL_MS;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: last error ${last.message}` : '';
      throw new Error(
        `waitFor timed out after ${opts.timeoutMs ?? 10_000} ms${opts.message ? ` (${opts.message})` : ''}${why}`,
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(interval, Math.max(0, deadline - Date.now()) + 1)));
    if (opts.intervalMs === undefined) interval = Math.min(MAX_INTERVAL_MS, interval * 1.5);
  }
}

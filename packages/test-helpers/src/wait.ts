/** Polls `fn` until it returns a truthy value or the deadline passes (no fixed sleeps). */
export async function waitFor<T>(
  fn: () => Promise<T> | T,
  opts: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const interval = opts.intervalMs ?? 25;
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
    await new Promise((r) => setTimeout(r, interval));
  }
}

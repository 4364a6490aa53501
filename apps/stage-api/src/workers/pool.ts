/**
 * Runs the CPU tasks either in a piscina worker pool (the event loop stays
 * free while an image is decoded, planned, rendered or measured) or inline
 * when `workers` is 0.
 *
 * A task may carry the stage request's AbortSignal (docs/stage-api.md,
 * "Deadline"): piscina drops a queued task and terminates the thread of a
 * running one; the call then rejects with the signal's reason. Inline work
 * cannot be interrupted: it is not started when the signal has fired, and
 * the caller stops waiting for it (the runner races every stage against the
 * signal).
 *
 * Every task run inside a stage request is a child span of it, `cpu <task>`
 * (docs/tracing.md): the decode, the plan, the render, the measures.
 */
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { withChildSpan } from '../tracing.js';
import type { CpuTaskName, CpuTasks } from './tasks.js';

export interface CpuRunOptions {
  signal?: AbortSignal | undefined;
}

export interface CpuRunner {
  run<K extends CpuTaskName>(
    name: K,
    args: Parameters<CpuTasks[K]>,
    opts?: CpuRunOptions,
  ): Promise<Awaited<ReturnType<CpuTasks[K]>>>;
  readonly mode: 'workers' | 'inline';
  readonly threads: number;
  close(): Promise<void>;
}

export function createCpuRunner(workers: number): CpuRunner {
  const runner = createUntracedRunner(workers);
  return {
    mode: runner.mode,
    threads: runner.threads,
    run: (name, args, opts) =>
      withChildSpan(`cpu ${name}`, { 'pipeline.cpu.task': name, 'pipeline.cpu.mode': runner.mode }, () =>
        runner.run(name, args, opts),
      ),
    close: () => runner.close(),
  };
}

function createUntracedRunner(workers: number): CpuRunner {
  if (workers <= 0) {
    let tasks: Promise<CpuTasks> | null = null;
    return {
      mode: 'inline',
      threads: 0,
      async run(name, args, opts = {}) {
        tasks ??= import('./tasks.js').then((m) => m.cpuTasks);
        const t = await tasks;
        opts.signal?.throwIfAborted();
        return await (t[name] as (...a: unknown[]) => Promise<never>)(...args);
      },
      async close() {},
    };
  }
  // Under a TypeScript loader (tests) this module is .ts, in dist it is .js.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const pool = new Piscina({
    filename: fileURLToPath(new URL(`./cpu-worker${ext}`, import.meta.url)),
    // Every thread stays: one stopped after an idle minute would make the next call pay its start again.
    minThreads: workers,
    maxThreads: workers,
    idleTimeout: 60_000,
  });
  // A thread that fails outside a task (its start, with minThreads) is replaced on the next task, whose
  // call then rejects with the error: the pool-level event must not end the process.
  pool.on('error', () => {});
  return {
    mode: 'workers',
    threads: workers,
    async run(name, args, opts = {}) {
      const signal = opts.signal;
      try {
        return await pool.run({ name, args }, signal ? { signal } : {});
      } catch (err) {
        // piscina's AbortError carries the reason as its cause; the caller wants the reason itself.
        if (signal?.aborted) throw signal.reason;
        throw err;
      }
    },
    async close() {
      await pool.destroy();
    },
  };
}

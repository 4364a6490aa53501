/**
 * Runs the CPU tasks either in a piscina worker pool (the event loop stays
 * free while an image is decoded, planned, rendered or measured) or inline
 * when `workers` is 0.
 */
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { CpuTaskName, CpuTasks } from './tasks.js';

export interface CpuRunner {
  run<K extends CpuTaskName>(name: K, ...args: Parameters<CpuTasks[K]>): Promise<Awaited<ReturnType<CpuTasks[K]>>>;
  readonly mode: 'workers' | 'inline';
  readonly threads: number;
  close(): Promise<void>;
}

export function createCpuRunner(workers: number): CpuRunner {
  if (workers <= 0) {
    let tasks: Promise<CpuTasks> | null = null;
    return {
      mode: 'inline',
      threads: 0,
      async run(name, ...args) {
        tasks ??= import('./tasks.js').then((m) => m.cpuTasks);
        const t = await tasks;
        return await (t[name] as (...a: unknown[]) => Promise<never>)(...args);
      },
      async close() {},
    };
  }
  // Under a TypeScript loader (tests) this module is .ts, in dist it is .js.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const pool = new Piscina({
    filename: fileURLToPath(new URL(`./cpu-worker${ext}`, import.meta.url)),
    minThreads: 0,
    maxThreads: workers,
    idleTimeout: 60_000,
  });
  return {
    mode: 'workers',
    threads: workers,
    async run(name, ...args) {
      return await pool.run({ name, args });
    },
    async close() {
      await pool.destroy();
    },
  };
}

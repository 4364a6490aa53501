/**
 * Piscina worker entry: runs one named task of ./tasks.ts.
 */
import { type CpuTaskName, cpuTasks } from './tasks.js';

export default async function run({ name, args }: { name: CpuTaskName; args: unknown[] }): Promise<unknown> {
  const fn = cpuTasks[name] as (...a: unknown[]) => Promise<unknown>;
  if (typeof fn !== 'function') throw new Error(`unknown CPU task: ${String(name)}`);
  return await fn(...args);
}

/** Facts about the machine a figure was taken on, and its load. */
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  node: string;
  postgres: string;
  loadavg: number[];
  at: string;
}

export function cpuModel(): string {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const m = text.match(/^model name\s*:\s*(.+)$/m);
    if (m?.[1]) return m[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

export function machineInfo(postgres: string): MachineInfo {
  return {
    nproc: cpus().length,
    cpuModel: cpuModel(),
    node: process.version,
    postgres,
    loadavg: loadavg().map((v) => Math.round(v * 100) / 100),
    at: new Date().toISOString(),
  };
}

interface CpuTicks {
  busy: number;
  total: number;
}

function ticks(): CpuTicks | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** Whole-machine CPU busy fraction between start() and the returned function's call. */
export function machineCpu(): () => number | null {
  const a = ticks();
  return () => {
    const b = ticks();
    if (!a || !b || b.total === a.total) return null;
    return Math.round(((b.busy - a.busy) / (b.total - a.total)) * 1000) / 1000;
  };
}

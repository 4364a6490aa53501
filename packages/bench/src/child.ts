/**
 * Forked helper processes (listener instances, Graphile Worker processes):
 * a tiny IPC protocol. The parent forks with a JSON config in argv[2]; the
 * child answers `{ type: 'ready' }` once it is serving, and on
 * `{ type: 'stop' }` closes everything it opened, sends `{ type: 'stopped' }`
 * with optional figures, and exits.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export type ChildMessage =
  | { type: 'ready'; pid: number; info?: Record<string, unknown> }
  | { type: 'stopped'; stats?: Record<string, unknown> }
  | { type: 'error'; message: string }
  | { type: 'event'; name: string; data?: Record<string, unknown> };

/**
 * Path of a sibling module for fork(): always the compiled `dist/<name>.js`
 * (the package's build runs before its tests and its benchmarks), so that a
 * forked process starts in a fraction of a second instead of compiling
 * TypeScript, which matters when the chaos suite restarts an instance.
 */
export function siblingModule(callerUrl: string, baseName: string): string {
  const dir = callerUrl.endsWith('.ts') ? '../dist/' : './';
  return fileURLToPath(new URL(`${dir}${baseName}.js`, callerUrl));
}

export interface Forked {
  child: ChildProcess;
  pid: number;
  info: Record<string, unknown>;
  /** Graceful stop (IPC), resolving with the child's figures; SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<Record<string, unknown> | undefined>;
  /** SIGKILL, resolves when the process is gone. */
  kill(): Promise<void>;
  exited: Promise<number | null>;
  onEvent(fn: (name: string, data?: Record<string, unknown>) => void): void;
}

export async function forkChild(
  modulePath: string,
  config: unknown,
  opts: { readyTimeoutMs?: number; env?: NodeJS.ProcessEnv; silent?: boolean; execArgv?: string[] } = {},
): Promise<Forked> {
  const child = fork(modulePath, [JSON.stringify(config)], {
    // Plain JavaScript: no TypeScript loader inherited from a test runner.
    execArgv: opts.execArgv ?? [],
    env: { ...process.env, ...(opts.env ?? {}) },
    stdio: opts.silent === false ? 'inherit' : ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const listeners: ((name: string, data?: Record<string, unknown>) => void)[] = [];
  let stoppedResolve: ((s: Record<string, unknown> | undefined) => void) | null = null;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${modulePath} not ready after ${opts.readyTimeoutMs ?? 60_000} ms`)),
      opts.readyTimeoutMs ?? 60_000,
    );
    child.on('message', (m: ChildMessage) => {
      if (m.type === 'ready') {
        clearTimeout(timer);
        resolve(m.info ?? {});
      } else if (m.type === 'error') {
        clearTimeout(timer);
        reject(new Error(`${modulePath}: ${m.message}`));
      } else if (m.type === 'stopped') stoppedResolve?.(m.stats);
      else if (m.type === 'event') for (const l of listeners) l(m.name, m.data);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${modulePath} exited with ${code} before it was ready`));
    });
  });
  let info: Record<string, unknown>;
  try {
    info = await ready;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };
  return {
    child,
    pid: child.pid as number,
    info,
    exited,
    onEvent: (fn) => listeners.push(fn),
    kill,
    stop: async (timeoutMs = 15_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return undefined;
      const stats = new Promise<Record<string, unknown> | undefined>((resolve) => {
        stoppedResolve = resolve;
      });
      child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const out = await Promise.race([stats, exited.then(() => undefined)]);
      await exited;
      clearTimeout(timer);
      return out;
    },
  };
}

/** Child side: report readiness, wait for 'stop', run the cleanup, report and exit. */
export function serveChild(
  start: () => Promise<{ info?: Record<string, unknown>; stop: () => Promise<Record<string, unknown> | undefined> }>,
): void {
  const send = (m: ChildMessage) => {
    if (process.send) process.send(m);
  };
  start()
    .then(({ info, stop }) => {
      process.on('message', (m: { type?: string }) => {
        if (m?.type !== 'stop') return;
        stop()
          .then((stats) => {
            send({ type: 'stopped', ...(stats ? { stats } : {}) });
            process.disconnect?.();
            process.exit(0);
          })
          .catch((err: unknown) => {
            send({ type: 'error', message: (err as Error).message });
            process.exit(1);
          });
      });
      // The parent went away: do not linger.
      process.on('disconnect', () => process.exit(0));
      send({ type: 'ready', pid: process.pid, ...(info ? { info } : {}) });
    })
    .catch((err: unknown) => {
      send({ type: 'error', message: (err as Error).stack ?? String(err) });
      process.exit(1);
    });
}

/** Reads the JSON config the parent put in argv[2]. */
export function childConfig<T>(): T {
  const raw = process.argv[2];
  if (!raw) throw new Error('missing JSON config argument');
  return JSON.parse(raw) as T;
}

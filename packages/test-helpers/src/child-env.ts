/**
 * Child processes of a test without tap's process tracker (docs/testing.md).
 *
 * tap loads @tapjs/processinfo into each test process and, through
 * process-on-spawn, into every node process a test spawns (its `--import` in
 * NODE_OPTIONS): a module hook thread that reads every file the child loads,
 * there for coverage. With coverage off (every package here) it only costs:
 * about 1 s of CPU and 1.5 s of wall time per child on this 2-core machine
 * (`feedly-pipeline --help`: 0.99 s without it, 2.4 to 3.1 s with it), and
 * the CLI tests start hundreds of children. Importing this module adds a
 * spawn listener, after tap's, that takes that `--import` out of the child's
 * NODE_OPTIONS again. With coverage on it does nothing.
 */
const TRACKER = /^"?--(?:import|loader|experimental-loader)[= ]\S*@tapjs[\\/]processinfo[\\/]\S*$/;

/** NODE_OPTIONS without tap's process tracker (other options kept, in order). */
export function withoutProcessTracker(nodeOptions: string | undefined): string | undefined {
  if (!nodeOptions) return nodeOptions;
  const kept = nodeOptions.split(/\s+/).filter((o) => o && !TRACKER.test(o));
  return kept.length ? kept.join(' ') : undefined;
}

export const STRIPS_PROCESS_TRACKER = process.env.TAP === '1' && process.env._TAPJS_PROCESSINFO_COVERAGE_ === '0';

if (STRIPS_PROCESS_TRACKER) {
  const { default: processOnSpawn } = await import('process-on-spawn');
  processOnSpawn.addListener((child) => {
    const options = withoutProcessTracker(child.env.NODE_OPTIONS);
    const env = { ...child.env };
    if (options === undefined) delete env.NODE_OPTIONS;
    else env.NODE_OPTIONS = options;
    child.env = env;
  });
}

// process-on-spawn ships no types; the part used here (src/child-env.ts).
declare module 'process-on-spawn' {
  interface SpawnOptions {
    env: NodeJS.ProcessEnv;
    readonly args: readonly string[];
  }
  const processOnSpawn: { addListener(listener: (options: SpawnOptions) => void): void };
  export default processOnSpawn;
}

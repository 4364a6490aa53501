export * from './assets.js';
export * from './seeder.js';
export * from './status.js';
export * from './verify.js';
export * from './monitor.js';
export * from './analyze/index.js';
export { runCli, buildProgram } from './cli/program.js';
export type { CliIo } from './cli/common.js';
export * from './db/index.js';

/**
 * Process entry point of `feedly-pipeline` (bin/feedly-pipeline.js imports
 * this module). The first Ctrl-C asks the running command to stop cleanly;
 * a second one exits at once.
 */
import { processIo } from './common.js';
import { runCli } from './program.js';

const controller = new AbortController();
process.on('SIGINT', () => {
  if (controller.signal.aborted) process.exit(130);
  controller.abort();
});
process.on('SIGTERM', () => controller.abort());

const code = await runCli(process.argv.slice(2), processIo(controller.signal));
process.exit(code);

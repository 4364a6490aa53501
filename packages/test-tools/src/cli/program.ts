/**
 * The `feedly-pipeline` program: commander for parsing and help, one file per
 * command. `runCli` returns the exit code instead of exiting, so tests can run
 * a command in-process; src/cli/index.ts is the process entry point.
 *
 * Exit codes: 0 success, 1 failure (one line on stderr, no stack trace unless
 * FEEDLY_DEBUG=1), 2 bad arguments (the error and a usage line on stderr).
 * Every command reads `.env` (or `--env-file PATH`) under the environment
 * before it runs (docs/cli.md).
 */
import { EnvFileError, loadEnv } from '@feedlyai/pipeline-core';
import { Command, CommanderError } from 'commander';
import { analyzeCommand } from './analyze.js';
import { cancelCommand } from './cancel.js';
import {
  CliFailure,
  type CliIo,
  type CommandContext,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  isUndefinedTable,
  NOT_MIGRATED,
} from './common.js';
import { listenCommand } from './listen.js';
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
  listen: 'run the job state listener on its own (for an API server that is not Fastify)',
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
Environment: ./.env when present, or --env-file PATH (or ENV_FILE=PATH); variables already set win.
Exit codes: 0 ok, 1 failure, 2 bad arguments.
Documentation: docs/cli.md.`,
    )
    // Before any command runs: the env file under the environment (docs/cli.md, "Environment files").
    .hook('preAction', (_program, actionCommand) => {
      const file = actionCommand.opts<{ envFile?: string }>().envFile ?? (ctx.io.env.ENV_FILE?.trim() || undefined);
      try {
        const loaded = loadEnv({ file, cwd: ctx.io.cwd ?? process.cwd(), env: ctx.io.env });
        ctx.io = { ...ctx.io, env: loaded.env };
      } catch (err) {
        if (!(err instanceof EnvFileError)) throw err;
        actionCommand.error(`error: ${err.message}`, { exitCode: EXIT_USAGE, code: 'feedly.envFile' });
      }
    });
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
    listenCommand,
  ];
  for (const make of commands) {
    const cmd = make(ctx).option(
      '--env-file <path>',
      'read environment variables from this file (default: ./.env when present); variables already set win',
    );
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
    // One of our tables is missing (dropped, or a path that did not check the schema first).
    if (isUndefinedTable(err)) {
      io.err(NOT_MIGRATED);
      return EXIT_FAILURE;
    }
    const e = err as Error;
    io.err(`error: ${e?.message ?? String(err)}`);
    if (ctx.io.env.FEEDLY_DEBUG === '1' && e?.stack) io.err(e.stack);
    return EXIT_FAILURE;
  }
}

import { Command } from 'commander';
import {
  type Check,
  fireTestCheck,
  formatCheck,
  listenerCheck,
  listenerConnectionCheck,
  probeStageServer,
  registryOf,
  triggerChecks,
} from '../status.js';
import {
  action,
  CliFailure,
  type CommandContext,
  openPool,
  parsePositiveNumber,
  resolveDatabaseUrl,
} from './common.js';

export function statusCommand(ctx: CommandContext): Command {
  const cmd = new Command('status')
    .description(
      "listener status check: stage server /healthz, whether a listener is running (the stage server's own answer, else a registered instance with a live connection in the database), the trigger functions and triggers, a job_state_listener connection",
    )
    .option('--fire-test', 'also perform a real test update on a dedicated test job and wait for its notifications')
    .option('--timeout <seconds>', 'how long the fire test waits for a notification', parsePositiveNumber, 5)
    .option('--stage-api-url <url>', 'stage server base URL (default: STAGE_API_URL or http://localhost:8011)')
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .option('--json', 'print the checks as JSON')
    .addHelpText(
      'after',
      `
Each check prints "OK   <check>" or "FAIL <check>: <what is wrong> -> <how to fix it>".
"listener enabled" is asked of the running processes, not read from this command's
environment, and says its source: the stage server's /healthz, or the database.
Exit code 1 when any check fails.
Examples:
  feedly-pipeline status
  feedly-pipeline status --fire-test`,
    );
  cmd.action(
    action(
      ctx,
      cmd,
      async (opts: {
        fireTest?: boolean;
        timeout: number;
        stageApiUrl?: string;
        databaseUrl?: string;
        json?: boolean;
      }) => {
        const url = resolveDatabaseUrl(opts, ctx.io.env);
        const stageApiUrl = opts.stageApiUrl ?? ctx.io.env.STAGE_API_URL?.trim() ?? 'http://localhost:8011';
        const checks: Check[] = [];
        const emit = (c: Check) => {
          checks.push(c);
          if (!opts.json) ctx.io.out(formatCheck(c));
        };
        const stage = await probeStageServer(stageApiUrl);
        emit(stage.check);
        let pool: Awaited<ReturnType<typeof openPool>> | null = null;
        try {
          pool = await openPool(url);
        } catch (err) {
          if (!(err instanceof CliFailure)) throw err;
          emit({
            name: 'database connection',
            ok: false,
            detail: err.message,
            fix: 'check DATABASE_URL / DB_* (or --database-url) and that PostgreSQL is running',
          });
        }
        try {
          const stageView = {
            url: stageApiUrl,
            reachable: stage.check.ok || stage.health !== null,
            health: stage.health,
          };
          emit(listenerCheck(stageView, pool ? await registryOf(pool) : null));
          if (pool) {
            for (const c of await triggerChecks(pool)) emit(c);
            emit(await listenerConnectionCheck(pool));
            if (opts.fireTest) for (const c of await fireTestCheck(url, opts.timeout * 1000)) emit(c);
          }
        } finally {
          await pool?.end().catch(() => {});
        }
        const failed = checks.filter((c) => !c.ok).length;
        if (opts.json) ctx.io.out(JSON.stringify({ ok: failed === 0, checks }));
        else
          ctx.io.out(
            failed === 0 ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks failed`,
          );
        return failed === 0 ? 0 : 1;
      },
    ),
  );
  return cmd;
}

/**
 * One Graphile Worker process of the chain benchmark (forked by chain.ts).
 */
import { run } from 'graphile-worker';
import { childConfig, serveChild } from './child.js';
import { makeTaskList } from './graphile-tasks.js';

export interface GraphileRunnerConfig {
  connectionString: string;
  stageUrl: string;
  concurrency: number;
  maxPoolSize: number;
}

serveChild(async () => {
  const cfg = childConfig<GraphileRunnerConfig>();
  const { taskList, agent, stats } = makeTaskList(cfg.stageUrl);
  const silent = () => () => {};
  const { Logger } = await import('graphile-worker');
  const runner = await run({
    connectionString: cfg.connectionString,
    concurrency: cfg.concurrency,
    maxPoolSize: cfg.maxPoolSize,
    noHandleSignals: true,
    taskList,
    logger: new Logger(silent),
  });
  return {
    info: { concurrency: cfg.concurrency },
    stop: async () => {
      await runner.stop();
      await agent.close();
      return { http: stats.http, cpu: process.cpuUsage() };
    },
  };
});

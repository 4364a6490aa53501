/**
 * One listener instance for the benchmarks and the chaos suite (forked by
 * feedly.ts): @feedlyai/listener-plugin registered on a bare Fastify, with its
 * own pool (the plugin opens it from `connectionString`). The engine's status
 * is sent back on stop.
 */
import listenerPlugin from '@feedlyai/listener-plugin';
import Fastify from 'fastify';
import { childConfig, serveChild } from './child.js';
import type { ListenerRunnerConfig } from './feedly.js';

serveChild(async () => {
  const cfg = childConfig<ListenerRunnerConfig>();
  const app = Fastify({
    logger: cfg.logLevel ? { level: cfg.logLevel, stream: process.stderr } : false,
  });
  await app.register(listenerPlugin, {
    connectionString: cfg.connectionString,
    stageApiUrl: cfg.stageUrl,
    instanceId: cfg.instanceId,
    ...(cfg.reconnectDelay !== undefined ? { reconnectDelay: cfg.reconnectDelay } : {}),
    ...(cfg.recoveryInterval !== undefined ? { recoveryInterval: cfg.recoveryInterval } : {}),
    ...(cfg.stepOverrides ? { stepOverrides: cfg.stepOverrides } : {}),
    ...(cfg.maxInFlight !== undefined ? { maxInFlight: cfg.maxInFlight } : {}),
    ...(cfg.poolMax !== undefined ? { poolMax: cfg.poolMax } : {}),
  });
  await app.ready();
  return {
    info: { instanceId: cfg.instanceId },
    stop: async () => {
      const status = app.jobStateListener.status();
      await app.close();
      return { ...status, cpu: process.cpuUsage() };
    },
  };
});

/**
 * GET /events: the live updates as Server-Sent Events (docs/dashboard.md,
 * "Live updates"). `job` or `tenant` narrow the stream; `since` (the id the
 * page was rendered at) or the `Last-Event-ID` header of a reconnect replays
 * what the browser missed, or sends `reset`. The host's auth hook has run
 * before this handler, like on every dashboard route.
 */
import { charLength, INPUT_CAPS } from '@feedlyai/pipeline-core';
import type { FastifyPluginAsync } from 'fastify';
import type { DashboardContext } from '../context.js';
import { FilterError, isUuid } from '../filters.js';
import type { StreamFilter } from '../live/hub.js';

export const eventRoutes: FastifyPluginAsync<{ ctx: DashboardContext }> = async (app, { ctx }) => {
  app.get('/events', async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const filter: StreamFilter = {};
    if (q.job !== undefined && q.job !== '') {
      if (!isUuid(q.job)) throw new FilterError('job', 'not a job id');
      filter.jobId = q.job.toLowerCase();
    }
    if (q.tenant !== undefined && q.tenant !== '') {
      if (typeof q.tenant !== 'string' || charLength(q.tenant) > INPUT_CAPS.tenant_id) {
        throw new FilterError('tenant', `a tenant id of at most ${INPUT_CAPS.tenant_id} characters`);
      }
      filter.tenant = q.tenant;
    }
    const header = req.headers['last-event-id'];
    const since = typeof q.since === 'string' && q.since !== '' ? q.since : undefined;
    const lastId = typeof header === 'string' && header !== '' ? header : since;
    if (ctx.hub.streamCount >= ctx.cfg.maxStreams) {
      reply.header('retry-after', '5');
      return reply.code(503).send({ error: 'too many open event streams' });
    }

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    res.socket?.setNoDelay(true);
    const close = ctx.hub.open(
      {
        write: (chunk) => {
          res.write(chunk);
        },
        get pendingBytes() {
          return res.writableLength;
        },
        end: () => {
          res.end();
        },
      },
      filter,
      lastId,
    );
    req.raw.on('close', close);
    res.on('error', close);
  });
};

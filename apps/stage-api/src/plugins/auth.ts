/**
 * Bearer-token auth (STAGE_API_TOKEN): constant-time comparison of SHA-256
 * digests (equal length whatever the input), on every route except the ones
 * marked public (health, metrics).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Route needs no token. */
    public?: boolean;
  }
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export function tokenMatches(expected: string, header: string | undefined): boolean {
  if (!header) return false;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!m) return false;
  return timingSafeEqual(digest(m[1] as string), digest(expected));
}

async function authPlugin(app: FastifyInstance, opts: { token: string | null }): Promise<void> {
  const token = opts.token;
  if (!token) return;
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.routeOptions.config?.public) return;
    if (!tokenMatches(token, req.headers.authorization)) {
      reply.header('www-authenticate', 'Bearer');
      return reply.code(401).send({ error: 'missing or invalid bearer token' });
    }
  });
}

export default fp(authPlugin, { fastify: '5.x', name: 'stage-api-auth' });

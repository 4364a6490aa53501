/** What the dashboard's routes share (built by plugin.ts). */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type pg from 'pg';
import type { ImageService } from './images.js';
import type { LiveHub } from './live/hub.js';
import type { ResolvedOptions } from './options.js';

export interface DashboardContext {
  cfg: ResolvedOptions;
  /** The pool the pages query (bound when the host is ready). */
  pool(): pg.Pool;
  hub: LiveHub;
  images: ImageService;
  /** The dashboard's URL prefix ('' or '/pipeline'), for links. */
  base: string;
  /** Renders a template of views/ to HTML (Eta, escaping every interpolation). */
  render(template: string, data: Record<string, unknown>): Promise<string>;
  /** A CSRF token for the forms of the page being rendered (sets the secret cookie when missing). */
  csrfToken(reply: FastifyReply): string;
  /** Where the notifications come from, for the page footer and the tests. */
  liveSource(): 'listener' | 'own' | 'none';
}

/** The client asked for JSON (an API client or a test) rather than a page. */
export function wantsJson(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? '';
  return accept.includes('application/json') && !accept.includes('text/html');
}

/** An htmx request: answer with a fragment, not a whole page. */
export function isHtmx(req: FastifyRequest): boolean {
  return req.headers['hx-request'] === 'true';
}

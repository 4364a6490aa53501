/**
 * The dashboard of `pnpm demo` and `pnpm dev` (docs/dashboard.md): @feedlyai/dashboard
 * on a Fastify host of its own, as a user's API server would host it, with
 * `allowAnonymous` and therefore bound to 127.0.0.1 only, never to another
 * interface. It reads the demo's database and storage folder and opens its
 * own LISTEN connection (the listener runs in the stage server's process).
 */
import { dashboard } from '@feedlyai/dashboard';
import Fastify from 'fastify';

export const DASHBOARD_HOST = '127.0.0.1';

export interface DemoDashboard {
  /** The dashboard's address, e.g. http://127.0.0.1:8012/pipeline/ */
  url: string;
  close(): Promise<void>;
}

export async function startDashboard(o: {
  databaseUrl: string;
  storageDir: string;
  port: number;
}): Promise<DemoDashboard> {
  const app = Fastify({ logger: false });
  await app.register(dashboard, {
    prefix: '/pipeline',
    allowAnonymous: true,
    connectionString: o.databaseUrl,
    storageDir: o.storageDir,
    env: {},
  });
  try {
    await app.listen({ host: DASHBOARD_HOST, port: o.port });
  } catch (err) {
    await app.close().catch(() => {});
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : o.port;
  return { url: `http://${DASHBOARD_HOST}:${port}/pipeline/`, close: () => app.close() };
}

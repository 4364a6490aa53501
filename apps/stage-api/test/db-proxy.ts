/**
 * A TCP proxy in front of the test's PostgreSQL, so that a test can take the
 * database away from the stage's pool for real (its sockets die, new ones are
 * dropped at once) while the test's own pool keeps a direct connection to
 * check the rows. It can also lose one answer: forward the client message
 * that contains a marker (a COMMIT, the start's UPDATE) to the server, then
 * drop the connection before the server's answer comes back.
 */
import net from 'node:net';
import type { Test } from 'tap';

export interface DbProxy {
  /** The target URL with the proxy's host and port. */
  url: string;
  /** Kill every proxied connection and drop new ones at once. */
  cut(): void;
  /** Accept connections again. */
  restore(): void;
  /** Connections dropped while cut. */
  readonly dropped: number;
  /**
   * Arms the proxy: the next client message containing `marker` reaches the
   * server, then its connection is closed without the server's answer.
   * Resolves when that happened.
   */
  loseAnswerTo(marker: string): Promise<void>;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** The answer of the last forwarded message is to be lost. */
  losing: boolean;
}

export async function startDbProxy(t: Test, targetUrl: string): Promise<DbProxy> {
  const target = new URL(targetUrl);
  const pairs = new Set<Pair>();
  let isCut = false;
  let dropped = 0;
  let armed: { marker: Buffer; resolve: () => void } | null = null;

  const server = net.createServer((client) => {
    client.on('error', () => {});
    if (isCut) {
      dropped++;
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    upstream.on('error', () => {});
    const pair: Pair = { client, upstream, losing: false };
    pairs.add(pair);
    client.on('data', (chunk: Buffer) => {
      if (armed && chunk.includes(armed.marker)) {
        const a = armed;
        armed = null;
        pair.losing = true;
        upstream.end(chunk); // the server reads the message, then end of stream
        client.destroy(); // the client never sees the answer
        a.resolve();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!pair.losing) client.write(chunk);
    });
    client.on('close', () => {
      // A losing pair lets the server finish reading the last message on its own.
      if (!pair.losing) upstream.destroy();
      pairs.delete(pair);
    });
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);

  const proxy: DbProxy = {
    url: url.toString(),
    cut() {
      isCut = true;
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
    },
    restore() {
      isCut = false;
    },
    get dropped() {
      return dropped;
    },
    loseAnswerTo(marker: string) {
      return new Promise<void>((resolve) => {
        armed = { marker: Buffer.from(marker), resolve };
      });
    },
    async close() {
      proxy.cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  t.teardown(() => proxy.close());
  return proxy;
}

// A small Server-Sent Events client for the tests: real HTTP, the events parsed as they arrive.
import http from 'node:http';

export interface SseEvent {
  id: string | null;
  event: string;
  data: string;
}

export interface SseClient {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: SseEvent[];
  /** Comment lines (`: ping`) received. */
  comments: number;
  ended: boolean;
  /** The id of the last event that carried one (what a browser sends back as Last-Event-ID). */
  lastId(): string | null;
  close(): void;
}

export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      let buffer = '';
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        comments: 0,
        ended: false,
        lastId: () => [...client.events].reverse().find((e) => e.id !== null)?.id ?? null,
        close: () => {
          req.destroy();
        },
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let cut = buffer.indexOf('\n\n');
        while (cut >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          cut = buffer.indexOf('\n\n');
          const lines = block.split('\n');
          if (lines.every((l) => l.startsWith(':'))) {
            client.comments++;
            continue;
          }
          const get = (k: string) => lines.find((l) => l.startsWith(`${k}: `))?.slice(k.length + 2) ?? null;
          const event = get('event');
          if (event === null) continue;
          client.events.push({ id: get('id'), event, data: get('data') ?? '' });
        }
      });
      res.on('end', () => {
        client.ended = true;
      });
      res.on('error', () => {
        client.ended = true;
      });
      resolve(client);
    });
    req.on('error', reject);
  });
}

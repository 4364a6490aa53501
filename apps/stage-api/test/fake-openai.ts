/**
 * A local OpenAI-compatible chat-completions server for tests: records every
 * request and answers with what the test scripted (status, headers, body,
 * or a hold until released), and whether the client went away before an
 * answer (`aborted`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  // biome-ignore lint/suspicious/noExplicitAny: parsed JSON of a test double; the tests assert its shape
  body: any;
  /** The client closed the connection before the answer was sent. */
  aborted: boolean;
}

export type Responder = (req: RecordedRequest, res: ServerResponse, index: number) => void | Promise<void>;

export interface FakeOpenAi {
  url: string;
  requests: RecordedRequest[];
  /** Answers, in order; the last one repeats. */
  script: Responder[];
  close(): Promise<void>;
}

export function chatAnswer(content: unknown, model = 'fake-model'): string {
  return JSON.stringify({
    id: 'chatcmpl-test',
    object: 'chat.completion',
    model,
    choices: [
      {
        index: 0,
        finish_reason: 'stop',
        message: { role: 'assistant', content: typeof content === 'string' ? content : JSON.stringify(content) },
      },
    ],
  });
}

export const ok =
  (content: unknown, model?: string): Responder =>
  (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(chatAnswer(content, model));
  };

export const status =
  (code: number, headers: Record<string, string> = {}): Responder =>
  (_req, res) => {
    res.writeHead(code, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify({ error: { message: `scripted ${code}` } }));
  };

/** Never answers: the request stays open until the client aborts it or the server closes. */
export const hang = (): Responder => () => {};

export async function startFakeOpenAi(t: Test, script: Responder[]): Promise<FakeOpenAi> {
  const requests: RecordedRequest[] = [];
  const fake: FakeOpenAi = { url: '', requests, script, close: async () => {} };
  let chatCount = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown = raw;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {}
      const rec: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        aborted: false,
      };
      res.on('close', () => {
        if (!res.writableFinished) rec.aborted = true;
      });
      if (req.url?.endsWith('/models')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"data":[]}');
        return;
      }
      requests.push(rec);
      const i = chatCount++;
      const responder = fake.script[Math.min(i, fake.script.length - 1)];
      Promise.resolve(responder?.(rec, res, i)).catch(() => res.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  fake.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  t.teardown(() => fake.close());
  return fake;
}

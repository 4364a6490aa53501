/**
 * The OpenAI-compatible client against a local fake server: request shape,
 * retries on 429/5xx (Retry-After honoured), timeout, invalid answers.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { z } from 'zod';
import { createChatClient, ModelError, parseRetryAfter } from '../src/clients/chat.js';
import { analysisAnswer, createVlmBackend } from '../src/clients/models.js';
import { ok, startFakeOpenAi, status } from './fake-openai.js';
import { FIXTURES } from './helpers.js';

const schema = z.object({ verdict: z.string() });
const req = {
  system: 'sys',
  user: 'hello',
  schemaName: 'verdict',
  jsonSchema: { type: 'object', properties: { verdict: { type: 'string' } }, required: ['verdict'] },
  validate: schema,
};

t.test('request shape: model, auth header, data URL image, response_format json_schema', async (t) => {
  const fake = await startFakeOpenAi(t, [
    ok(
      {
        usable: true,
        description: 'A cup of coffee on a saucer.',
        dominant_colors: ['#6b4a2b', 'FFFFFF'],
        problems: [],
      },
      'llava-1.6',
    ),
  ]);
  const client = createChatClient({
    name: 'VLM',
    baseUrl: `${fake.url}/`,
    model: 'llava-hf/llava-1.5-7b-hf',
    apiKey: 'sk-test',
    timeoutMs: 5_000,
    maxRetries: 0,
  });
  const vlm = createVlmBackend(client);
  const png = await readFile(path.join(FIXTURES, 'coffee.png'));
  const a = await vlm.analyze(png);
  t.same(a.analysis.dominantColors, ['#6b4a2b', '#ffffff'], 'colours normalised');
  t.equal(a.model, 'llava-1.6');
  t.equal(fake.requests.length, 1);
  const r = fake.requests[0];
  t.equal(r?.method, 'POST');
  t.equal(r?.url, '/v1/chat/completions');
  t.equal(r?.headers.authorization, 'Bearer sk-test');
  t.equal(r?.body.model, 'llava-hf/llava-1.5-7b-hf');
  t.equal(r?.body.response_format.type, 'json_schema');
  t.equal(r?.body.response_format.json_schema.name, 'product_photo_analysis');
  t.same(r?.body.response_format.json_schema.schema.required, ['usable', 'description', 'dominant_colors', 'problems']);
  const user = r?.body.messages.find((m: { role: string }) => m.role === 'user');
  const image = user.content.find((p: { type: string }) => p.type === 'image_url');
  t.match(image.image_url.url, /^data:image\/jpeg;base64,\/9j\//, 'image sent as a JPEG data URL');
  t.equal(r?.body.messages[0].role, 'system');
});

t.test('no api key: no authorization header', async (t) => {
  const fake = await startFakeOpenAi(t, [ok({ verdict: 'fine' })]);
  const client = createChatClient({ name: 'LLM', baseUrl: fake.url, model: 'm', timeoutMs: 5_000, maxRetries: 0 });
  const a = await client.completeJson(req);
  t.same(a.value, { verdict: 'fine' });
  t.equal(fake.requests[0]?.headers.authorization, undefined);
});

t.test('retries on 429 (Retry-After honoured) and 5xx, then succeeds', async (t) => {
  const fake = await startFakeOpenAi(t, [
    status(429, { 'retry-after': '0.3' }),
    status(503),
    status(500),
    ok('```json\n{"verdict": "after retries"}\n```'),
  ]);
  const client = createChatClient({
    name: 'LLM',
    baseUrl: fake.url,
    model: 'm',
    timeoutMs: 5_000,
    maxRetries: 3,
    backoffBaseMs: 20,
    backoffMaxMs: 100,
  });
  const t0 = Date.now();
  const a = await client.completeJson(req);
  t.same(a.value, { verdict: 'after retries' }, 'fenced JSON accepted');
  t.equal(a.attempts, 4);
  t.equal(fake.requests.length, 4);
  t.ok(Date.now() - t0 >= 280, 'waited at least the Retry-After of the 429');
});

t.test('gives up after maxRetries with a clear error; 4xx is not retried', async (t) => {
  const fake = await startFakeOpenAi(t, [status(502)]);
  const client = createChatClient({
    name: 'VLM',
    baseUrl: fake.url,
    model: 'm',
    timeoutMs: 5_000,
    maxRetries: 2,
    backoffBaseMs: 5,
  });
  const err = await client.completeJson(req).catch((e: unknown) => e);
  t.ok(err instanceof ModelError);
  t.match((err as Error).message, /VLM answered HTTP 502.*gave up after 3 attempts/);
  t.equal(fake.requests.length, 3);

  const fake2 = await startFakeOpenAi(t, [status(400)]);
  const c2 = createChatClient({ name: 'VLM', baseUrl: fake2.url, model: 'm', timeoutMs: 5_000, maxRetries: 3 });
  const e2 = await c2.completeJson(req).catch((e: unknown) => e);
  t.match((e2 as Error).message, /HTTP 400/);
  t.equal(fake2.requests.length, 1, '400 is not retried');
});

t.test('connection errors are retried, then reported', async (t) => {
  const client = createChatClient({
    name: 'LLM',
    baseUrl: 'http://127.0.0.1:9/v1',
    model: 'm',
    timeoutMs: 2_000,
    maxRetries: 1,
    backoffBaseMs: 5,
  });
  const err = await client.completeJson(req).catch((e: unknown) => e);
  t.ok(err instanceof ModelError);
  t.equal((err as ModelError).kind, 'connection');
  t.match((err as Error).message, /LLM connection failed.*gave up after 2 attempts/);
});

t.test('timeout', async (t) => {
  const fake = await startFakeOpenAi(t, [() => {}]); // never answers
  const client = createChatClient({ name: 'VLM', baseUrl: fake.url, model: 'm', timeoutMs: 200, maxRetries: 0 });
  const t0 = Date.now();
  const err = await client.completeJson(req).catch((e: unknown) => e);
  t.equal((err as ModelError).kind, 'timeout');
  t.match((err as Error).message, /did not answer within 200 ms/);
  t.ok(Date.now() - t0 < 2_000);
});

t.test('invalid answers are clear errors', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not JSON content', 'the cup looks great!', /answer content is not valid JSON/],
    ['wrong schema', { verdict: 42 }, /does not match the expected schema: verdict/],
  ];
  for (const [name, content, re] of cases) {
    const fake = await startFakeOpenAi(t, [ok(content)]);
    const client = createChatClient({ name: 'VLM', baseUrl: fake.url, model: 'm', timeoutMs: 2_000, maxRetries: 2 });
    const err = await client.completeJson(req).catch((e: unknown) => e);
    t.equal((err as ModelError).kind, 'invalid_answer', name);
    t.match((err as Error).message, re, name);
    t.equal(fake.requests.length, 1, `${name}: not retried`);
  }
  const fake = await startFakeOpenAi(t, [
    (_r, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('<html>proxy error</html>');
    },
  ]);
  const client = createChatClient({ name: 'VLM', baseUrl: fake.url, model: 'm', timeoutMs: 2_000, maxRetries: 0 });
  await t.rejects(client.completeJson(req), /not a JSON chat completion/);
  t.notOk(analysisAnswer.safeParse({ usable: 'yes' }).success);
});

t.test('parseRetryAfter', async (t) => {
  t.equal(parseRetryAfter('2'), 2000);
  t.equal(parseRetryAfter('0.5'), 500);
  t.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6000);
  t.equal(parseRetryAfter('soon'), undefined);
  t.equal(parseRetryAfter(undefined), undefined);
});

/**
 * Configuration errors name what the operator set: the environment variable
 * (VLM_TIMEOUT_MS), or the buildApp option when an option gave the value.
 */
import t from 'tap';
import { ConfigError, loadConfig, STAGE_ENV_VARS } from '../src/config.js';

const DB = { DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/x' };

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('no ConfigError thrown');
}

t.test('an invalid variable is named by its environment variable, with its bounds and the value', async (t) => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ VLM_TIMEOUT_MS: 'abc' }, 'VLM_TIMEOUT_MS must be an integer from 100 to 3600000, got "abc"'],
    [{ LLM_TIMEOUT_MS: '50' }, 'LLM_TIMEOUT_MS must be an integer from 100 to 3600000, got "50"'],
    [{ VLM_MAX_RETRIES: '1.5' }, 'VLM_MAX_RETRIES must be an integer from 0 to 10, got "1.5"'],
    [{ VLM_BASE_URL: 'ftp://gpu' }, 'VLM_BASE_URL must be an http(s) URL, got "ftp://gpu"'],
    [{ PORT: 'eighty' }, 'PORT must be an integer from 0 to 65535, got "eighty"'],
    [{ STAGE_BODY_LIMIT: '10' }, 'STAGE_BODY_LIMIT must be an integer from 256 to 104857600, got "10"'],
    [{ STAGE_CONCURRENCY_OCR: '0' }, 'STAGE_CONCURRENCY_OCR must be an integer from 1 to 256, got "0"'],
    [{ STAGE_RETRY_AFTER_SECONDS: '-1' }, 'STAGE_RETRY_AFTER_SECONDS must be an integer from 1 to 3600, got "-1"'],
    [{ STAGE_CPU_WORKERS: 'many' }, 'STAGE_CPU_WORKERS must be an integer from 0 to 64, got "many"'],
    [{ STAGE_OCR_WORKERS: '99' }, 'STAGE_OCR_WORKERS must be an integer from 1 to 16, got "99"'],
    [{ IMAGE_FETCH_MAX_BYTES: '0' }, 'IMAGE_FETCH_MAX_BYTES must be an integer from 1 to 1073741824, got "0"'],
    [{ IMAGE_FETCH_TIMEOUT_MS: 'x' }, 'IMAGE_FETCH_TIMEOUT_MS must be an integer from 1 to 600000, got "x"'],
    [{ STAGE_MAX_IMAGE_BYTES: '1e99' }, 'STAGE_MAX_IMAGE_BYTES must be an integer from 1 to 1073741824, got "1e99"'],
  ];
  for (const [env, expected] of cases) {
    const msg = messageOf(() => loadConfig({}, { ...DB, ...env }));
    t.equal(msg, `invalid stage-api configuration: ${expected}`, Object.keys(env)[0]);
    t.notMatch(msg, /timeoutMs|maxRetries|concurrency\.|imageFetch\./, 'no internal path');
  }
});

t.test('every invalid variable at once, each named', async (t) => {
  const msg = messageOf(() =>
    loadConfig({}, { ...DB, PORT: 'x', VLM_TIMEOUT_MS: 'y', STAGE_CONCURRENCY_RENDER: '0', LLM_MAX_RETRIES: '11' }),
  );
  for (const v of ['PORT', 'VLM_TIMEOUT_MS', 'STAGE_CONCURRENCY_RENDER', 'LLM_MAX_RETRIES']) {
    t.match(msg, new RegExp(`\\b${v} must be`), v);
  }
});

t.test('a value from buildApp options is named by the option', async (t) => {
  t.equal(
    messageOf(() => loadConfig({ vlm: { timeoutMs: 5 } }, { ...DB, VLM_TIMEOUT_MS: '1000' })),
    'invalid stage-api configuration: option vlm.timeoutMs must be an integer from 100 to 3600000, got 5',
  );
  t.equal(
    messageOf(() => loadConfig({ port: -1 }, DB)),
    'invalid stage-api configuration: option port must be an integer from 0 to 65535, got -1',
  );
  // The environment's value under an option of the same object is still the variable's.
  t.equal(
    messageOf(() => loadConfig({ vlm: { model: 'x' } }, { ...DB, VLM_TIMEOUT_MS: 'abc' })),
    'invalid stage-api configuration: VLM_TIMEOUT_MS must be an integer from 100 to 3600000, got "abc"',
  );
});

t.test('no database, and secrets never shown', async (t) => {
  t.equal(
    messageOf(() => loadConfig({}, {})),
    'invalid stage-api configuration: no database configured: set DATABASE_URL (or DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD)',
  );
  const msg = messageOf(() => loadConfig({ token: 42 as unknown as string }, DB));
  t.match(msg, /^invalid stage-api configuration: option token must be a string$/);
});

t.test('valid variables are read, and the list of variables is complete', async (t) => {
  const c = loadConfig({}, { ...DB, VLM_TIMEOUT_MS: '1500', STAGE_CONCURRENCY_YOLO: '3', PORT: '9000' });
  t.equal(c.vlm.timeoutMs, 1500);
  t.equal(c.concurrency.yolo, 3);
  t.equal(c.port, 9000);
  t.ok(STAGE_ENV_VARS.includes('VLM_TIMEOUT_MS'));
  t.ok(STAGE_ENV_VARS.includes('STAGE_CONCURRENCY_RENDER'));
  t.ok(STAGE_ENV_VARS.includes('IMAGE_FETCH_ALLOWED_HOSTS'));
});

/**
 * Image storage shared by the stage server and the CLI (docs/stage-api.md, "Image assets").
 *
 * An `image_assets.image_url` is either a key relative to the storage root
 * (`STORAGE_DIR`, default `.data/storage`) or an `http(s)` URL fetched with
 * size and time limits from allow-listed hosts only
 * (`IMAGE_FETCH_ALLOWED_HOSTS`, default none).
 *
 * No key, from a request or from a row, can leave the root: `..` segments,
 * absolute paths, NUL bytes, backslashes and symbolic links that point
 * outside are refused.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, realpath, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';

export type StorageErrorCode =
  | 'invalid_key'
  | 'outside_root'
  | 'not_found'
  | 'too_large'
  | 'host_not_allowed'
  | 'invalid_url'
  | 'fetch_failed'
  | 'timeout';

export class StorageError extends Error {
  readonly code: StorageErrorCode;
  constructor(code: StorageErrorCode, message: string) {
    super(message);
    this.name = 'StorageError';
    this.code = code;
  }
}

export interface PutOptions {
  /** Folder under the root, e.g. `overlay` or `feed/2026`. Letters, digits, `_`, `-`, `/`. */
  prefix: string;
  /** File extension without the dot, e.g. `png`. */
  ext: string;
}

export interface FetchLimits {
  /** Hosts (`example.com` or `example.com:8080`) that may be fetched; empty: none. */
  allowedHosts: readonly string[];
  maxBytes: number;
  timeoutMs: number;
}

export interface Storage {
  /** Absolute, real path of the root. */
  readonly root: string;
  /** Stores the bytes content-addressed (sha256) and returns the key relative to the root. */
  put(bytes: Uint8Array, options: PutOptions): Promise<string>;
  /** Reads a stored file by key. */
  read(key: string, options?: { maxBytes?: number }): Promise<Buffer>;
  /** The absolute path of a key, refusing anything that would leave the root. */
  resolve(key: string): Promise<string>;
  /** Fetches an `http(s)` URL from an allow-listed host, within size and time limits. */
  readImageUrl(url: string, limits: FetchLimits): Promise<Buffer>;
  /** `readImageUrl` for `http(s)` URLs, `read` for keys. */
  readRef(ref: string, limits: FetchLimits): Promise<Buffer>;
}

export interface CreateStorageOptions {
  /** The storage root; created when missing. Relative paths are resolved against the working directory. */
  root: string;
}

const SAFE_PREFIX = /^[A-Za-z0-9_-]+(?:\/[A-Za-z0-9_-]+)*$/;
const SAFE_EXT = /^[A-Za-z0-9]{1,8}$/;
const URL_RE = /^https?:\/\//i;

/** True when `ref` is an `http(s)` URL rather than a storage key. */
export function isRemoteRef(ref: string): boolean {
  return URL_RE.test(ref);
}

/** `IMAGE_FETCH_ALLOWED_HOSTS` (comma or space separated) as a list; empty when unset. */
export function allowedHostsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.IMAGE_FETCH_ALLOWED_HOSTS ?? '')
    .split(/[\s,]+/)
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== '');
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Syntactic checks on a key, before any file system access. */
function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new StorageError('invalid_key', 'storage key is empty');
  if (key.length > 1024) throw new StorageError('invalid_key', 'storage key is longer than 1024 characters');
  if (key.includes('\0')) throw new StorageError('invalid_key', 'storage key contains a NUL byte');
  if (key.includes('\\')) throw new StorageError('invalid_key', 'storage key contains a backslash');
  if (path.isAbsolute(key) || key.startsWith('/')) {
    throw new StorageError('outside_root', `storage key must be relative to the storage root: ${JSON.stringify(key)}`);
  }
  if (key.split('/').some((seg) => seg === '..')) {
    throw new StorageError('outside_root', `storage key must not contain '..': ${JSON.stringify(key)}`);
  }
}

export async function createStorage(options: CreateStorageOptions): Promise<Storage> {
  await mkdir(path.resolve(options.root), { recursive: true });
  const root = await realpath(path.resolve(options.root));

  async function resolve(key: string): Promise<string> {
    checkKey(key);
    const abs = path.resolve(root, key);
    if (!isInside(root, abs)) throw new StorageError('outside_root', `storage key leaves the storage root: ${key}`);
    // Follow symbolic links of the deepest existing ancestor: a link inside the
    // root that points outside is refused as well.
    let probe = abs;
    let rest = '';
    for (;;) {
      try {
        const real = await realpath(probe);
        const full = rest ? path.join(real, rest) : real;
        if (!isInside(root, full)) {
          throw new StorageError('outside_root', `storage key resolves outside the storage root: ${key}`);
        }
        return full;
      } catch (err) {
        if (err instanceof StorageError) throw err;
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || probe === root) throw err;
        rest = rest ? path.join(path.basename(probe), rest) : path.basename(probe);
        probe = path.dirname(probe);
      }
    }
  }

  async function put(bytes: Uint8Array, o: PutOptions): Promise<string> {
    if (!SAFE_PREFIX.test(o.prefix)) throw new StorageError('invalid_key', `invalid storage prefix: ${o.prefix}`);
    if (!SAFE_EXT.test(o.ext)) throw new StorageError('invalid_key', `invalid file extension: ${o.ext}`);
    const hash = createHash('sha256').update(bytes).digest('hex');
    const key = `${o.prefix}/${hash.slice(0, 2)}/${hash}.${o.ext.toLowerCase()}`;
    const abs = await resolve(key);
    await mkdir(path.dirname(abs), { recursive: true });
    // Write to a unique temporary name, then rename: readers never see a partial file,
    // and two writers of the same content both succeed.
    const tmp = `${abs}.${randomUUID()}.tmp`;
    await writeFile(tmp, bytes);
    await rename(tmp, abs);
    return key;
  }

  async function read(key: string, o: { maxBytes?: number } = {}): Promise<Buffer> {
    const abs = await resolve(key);
    let size: number;
    try {
      const st = await stat(abs);
      if (!st.isFile()) throw new StorageError('not_found', `not a file in storage: ${key}`);
      size = st.size;
    } catch (err) {
      if (err instanceof StorageError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StorageError('not_found', `file not found in storage: ${key}`);
      }
      throw err;
    }
    if (o.maxBytes !== undefined && size > o.maxBytes) {
      throw new StorageError('too_large', `stored file ${key} is ${size} bytes, over the limit of ${o.maxBytes}`);
    }
    return await readFile(abs);
  }

  async function readImageUrl(url: string, limits: FetchLimits): Promise<Buffer> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new StorageError('invalid_url', `invalid image URL: ${url}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new StorageError('invalid_url', `only http(s) image URLs are fetched, not ${u.protocol}`);
    }
    if (u.username || u.password) throw new StorageError('invalid_url', 'image URLs with credentials are refused');
    const allowed = limits.allowedHosts.map((h) => h.toLowerCase());
    if (!allowed.includes(u.host.toLowerCase()) && !allowed.includes(u.hostname.toLowerCase())) {
      throw new StorageError(
        'host_not_allowed',
        `image host ${u.host} is not in IMAGE_FETCH_ALLOWED_HOSTS (${allowed.length ? allowed.join(', ') : 'empty'})`,
      );
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), limits.timeoutMs);
    try {
      // undici does not follow redirects here: a redirect to another host cannot bypass the allow-list.
      const res = await request(u, { method: 'GET', signal: ac.signal, headersTimeout: limits.timeoutMs });
      if (res.statusCode !== 200) {
        await res.body.dump().catch(() => {});
        throw new StorageError('fetch_failed', `fetching ${u.host}${u.pathname} answered HTTP ${res.statusCode}`);
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > limits.maxBytes) {
        await res.body.dump().catch(() => {});
        throw new StorageError(
          'too_large',
          `image at ${u.host}${u.pathname} is ${declared} bytes, over ${limits.maxBytes}`,
        );
      }
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of res.body) {
        total += (chunk as Buffer).length;
        if (total > limits.maxBytes) {
          ac.abort();
          throw new StorageError('too_large', `image at ${u.host}${u.pathname} exceeds ${limits.maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      return Buffer.concat(chunks, total);
    } catch (err) {
      if (err instanceof StorageError) throw err;
      if (ac.signal.aborted) {
        throw new StorageError('timeout', `fetching ${u.host}${u.pathname} took longer than ${limits.timeoutMs} ms`);
      }
      throw new StorageError('fetch_failed', `fetching ${u.host}${u.pathname} failed: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async function readRef(ref: string, limits: FetchLimits): Promise<Buffer> {
    return isRemoteRef(ref) ? await readImageUrl(ref, limits) : await read(ref, { maxBytes: limits.maxBytes });
  }

  return { root, put, read, resolve, readImageUrl, readRef };
}

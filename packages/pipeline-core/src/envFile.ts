/**
 * `.env` files for the stage server and the CLI (docs/cli.md, "Environment
 * files"): values are parsed by Node's own `util.parseEnv`; every line is
 * checked first, because that parser skips or misreads a line it cannot
 * parse without saying so. A bad line is an EnvFileError naming the file and
 * the line. Variables already in the environment win over the file's.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';

export class EnvFileError extends Error {
  override name = 'EnvFileError';
  constructor(
    message: string,
    readonly file: string,
    /** 1-based line number, when the problem is on a line. */
    readonly line?: number,
  ) {
    super(message);
  }
}

const ASSIGNMENT = /^(?:export\s+)?([^=\s]*)\s*=\s*(.*)$/s;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const QUOTES = new Set(['"', "'", '`']);

/**
 * Parses the text of an env file: `NAME=value` lines (optionally `export
 * NAME=value`), blank lines and `# comments`; a value in double, single or
 * back quotes may span lines. Throws EnvFileError with the line number of
 * the first line that is not one of those.
 */
export function parseEnvFile(content: string, file: string): Record<string, string> {
  const lines = content.replace(/^\uFEFF/, '').split(/\r?\n/);
  const names: Array<{ name: string; line: number }> = [];
  const fail = (line: number, why: string): never => {
    throw new EnvFileError(`${file}:${line}: ${why}`, file, line);
  };
  for (let i = 0; i < lines.length; i++) {
    const text = (lines[i] as string).trim();
    if (text === '' || text.startsWith('#')) continue;
    const m = ASSIGNMENT.exec(text);
    if (!m) fail(i + 1, 'cannot parse this line: expected NAME=value');
    const [, name, value] = m as RegExpExecArray;
    if (!NAME.test(name as string)) {
      fail(
        i + 1,
        'cannot parse this line: the name before "=" must be letters, digits and _ (not starting with a digit)',
      );
    }
    names.push({ name: name as string, line: i + 1 });
    const quote = (value as string)[0];
    if (quote === undefined || !QUOTES.has(quote)) continue;
    // A quoted value ends at the next same quote, on this line or a later one (as util.parseEnv reads it).
    let rest = (value as string).slice(1);
    let j = i;
    for (;;) {
      const end = rest.indexOf(quote);
      if (end >= 0) {
        const after = rest.slice(end + 1).trim();
        if (after !== '' && !after.startsWith('#')) fail(j + 1, `unexpected text after the closing ${quote}`);
        break;
      }
      j++;
      if (j >= lines.length) fail(i + 1, `the ${quote} quote opened on this line is never closed`);
      rest = lines[j] as string;
    }
    i = j;
  }
  const parsed = parseEnv(content);
  const out: Record<string, string> = {};
  for (const { name, line } of names) {
    const v = parsed[name];
    if (v === undefined) fail(line, 'cannot parse this line');
    out[name] = v as string;
  }
  return out;
}

/** Reads and parses one env file; a missing or unreadable file is an EnvFileError. */
export function readEnvFile(path: string): Record<string, string> {
  let content: string;
  try {
    content = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory' : (err as Error).message;
    throw new EnvFileError(`cannot read env file ${path}: ${why}`, path);
  }
  return parseEnvFile(content, path);
}

export interface LoadEnvOptions {
  /** An explicit file (`--env-file`, `ENV_FILE`): it must exist. */
  file?: string | undefined;
  /** Where `.env` is looked for when no file is given (default: the current directory). */
  cwd?: string;
  /** The real environment (default process.env); its variables win over the file's. */
  env?: NodeJS.ProcessEnv;
}

export interface LoadedEnv {
  /** The file's variables under the real environment's. */
  env: NodeJS.ProcessEnv;
  /** The file read (absolute path), or null when there was none. */
  file: string | null;
  /** Names the file set that the real environment did not. */
  applied: string[];
}

/**
 * The environment with an env file under it: the explicit `file` (which must
 * exist), else `.env` in `cwd` when there is one. Throws EnvFileError.
 */
export function loadEnv(o: LoadEnvOptions = {}): LoadedEnv {
  const env = o.env ?? process.env;
  const cwd = o.cwd ?? process.cwd();
  let path: string | null = null;
  if (o.file !== undefined) {
    if (o.file.trim() === '') throw new EnvFileError('the env file name is empty', o.file);
    path = resolve(cwd, o.file);
  } else {
    const dflt = resolve(cwd, '.env');
    const isFile = (() => {
      try {
        return statSync(dflt).isFile();
      } catch {
        return false;
      }
    })();
    if (isFile) path = dflt;
  }
  if (!path) return { env: { ...env }, file: null, applied: [] };
  const vars = readEnvFile(path);
  const applied = Object.keys(vars).filter((k) => env[k] === undefined);
  return { env: { ...vars, ...env }, file: path, applied };
}

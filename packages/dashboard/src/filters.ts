/**
 * The jobs page's query string, validated (docs/dashboard.md, "Jobs page"):
 * every bad value is a FilterError naming the parameter, answered 400 with
 * the page showing it. Empty values (what an HTML form sends for a field left
 * blank) mean "no filter".
 */
import { charLength, INPUT_CAPS, isStep, STEPS, type Step } from '@feedlyai/pipeline-core';
import { isJobStatus, JOB_STATUSES, type JobStatus } from './vocabulary.js';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

export class FilterError extends Error {
  readonly param: string;
  constructor(param: string, message: string) {
    super(`${param}: ${message}`);
    this.name = 'FilterError';
    this.param = param;
  }
}

/** Where the next page starts: strictly older than this job in (created_at, job_id) order. */
export interface Cursor {
  /** created_at to the microsecond, as PostgreSQL wrote it (UTC, ISO 8601). */
  createdAt: string;
  jobId: string;
}

export interface JobFilters {
  tenant: string | null;
  status: JobStatus | null;
  step: Step | null;
  /** created_at at or after. */
  from: Date | null;
  /** created_at before. */
  to: Date | null;
}

export interface JobsQuery extends JobFilters {
  cursor: Cursor | null;
  limit: number;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CURSOR_RE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z)~([0-9a-fA-F-]{36})$/;
const OFFSET_RE = /^([+-])(\d{2}):(\d{2})$/;
const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?$/;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}

/** One value of a query parameter: undefined when absent or blank; a repeated parameter is an error. */
function single(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) throw new FilterError(name, 'given more than once');
  if (typeof v !== 'string') throw new FilterError(name, 'must be a string');
  const t = v.trim();
  return t === '' ? undefined : t;
}

/** The `tz` parameter (the browser's UTC offset, ±HH:MM) in minutes east of UTC. */
function parseOffset(value: string | undefined): number {
  if (value === undefined) return 0;
  const m = OFFSET_RE.exec(value);
  if (!m) throw new FilterError('tz', `expected a UTC offset like +09:00, got '${value}'`);
  const minutes = Number(m[2]) * 60 + Number(m[3]);
  if (Number(m[2]) > 14 || Number(m[3]) > 59) throw new FilterError('tz', `no such UTC offset: '${value}'`);
  return m[1] === '-' ? -minutes : minutes;
}

/**
 * A moment: `2026-03-01`, `2026-03-01T09:30`, `2026-03-01T09:30:15`, with an
 * optional `Z` or offset; without one it is read at `offsetMinutes` (the
 * browser's offset, which the page's datetime fields leave out).
 */
export function parseMoment(param: string, value: string, offsetMinutes: number): Date {
  const m = TIME_RE.exec(value);
  if (!m) {
    throw new FilterError(
      param,
      `expected a date or date and time like 2026-03-01T09:30 (optionally with Z or +09:00), got '${value}'`,
    );
  }
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4] ?? '0', m[5] ?? '0', m[6] ?? '0'].map(Number) as number[];
  const fraction = m[7] ? Number(m[7]) : 0;
  const zone = m[8];
  const offset = zone === undefined ? offsetMinutes : zone === 'Z' ? 0 : parseOffset(zone);
  const utc = Date.UTC(y as number, (mo as number) - 1, d as number, h as number, mi as number, s as number);
  const check = new Date(utc);
  if (
    check.getUTCFullYear() !== y ||
    check.getUTCMonth() !== (mo as number) - 1 ||
    check.getUTCDate() !== d ||
    (h as number) > 23 ||
    (mi as number) > 59 ||
    (s as number) > 59
  ) {
    throw new FilterError(param, `'${value}' is not a valid date or time`);
  }
  return new Date(utc + Math.round(fraction * 1000) - offset * 60_000);
}

export function parseCursor(value: string): Cursor {
  const m = CURSOR_RE.exec(value);
  if (!m || !isUuid(m[2]) || Number.isNaN(Date.parse(m[1] as string))) {
    throw new FilterError('cursor', 'not a cursor of this page (follow the "older" link instead of editing it)');
  }
  return { createdAt: m[1] as string, jobId: (m[2] as string).toLowerCase() };
}

export function formatCursor(c: Cursor): string {
  return `${c.createdAt}~${c.jobId}`;
}

/** The filters and page of a jobs page request. Throws FilterError. */
export function parseJobsQuery(query: Record<string, unknown>): JobsQuery {
  const tenant = single(query, 'tenant');
  if (tenant !== undefined && charLength(tenant) > INPUT_CAPS.tenant_id) {
    throw new FilterError('tenant', `at most ${INPUT_CAPS.tenant_id} characters`);
  }
  const status = single(query, 'status');
  if (status !== undefined && !isJobStatus(status)) {
    throw new FilterError('status', `expected one of ${JOB_STATUSES.join(', ')}, got '${status}'`);
  }
  const step = single(query, 'step');
  if (step !== undefined && !isStep(step)) {
    throw new FilterError('step', `expected one of ${STEPS.join(', ')}, got '${step}'`);
  }
  const offset = parseOffset(single(query, 'tz'));
  const fromText = single(query, 'from');
  const toText = single(query, 'to');
  const from = fromText === undefined ? null : parseMoment('from', fromText, offset);
  const to = toText === undefined ? null : parseMoment('to', toText, offset);
  if (from && to && from.getTime() >= to.getTime()) throw new FilterError('to', 'must be after from');
  const cursorText = single(query, 'cursor');
  const limitText = single(query, 'limit');
  let limit = DEFAULT_PAGE_SIZE;
  if (limitText !== undefined) {
    limit = Number(limitText);
    if (!/^\d+$/.test(limitText) || !Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
      throw new FilterError('limit', `expected an integer from 1 to ${MAX_PAGE_SIZE}, got '${limitText}'`);
    }
  }
  return {
    tenant: tenant ?? null,
    status: (status as JobStatus | undefined) ?? null,
    step: (step as Step | undefined) ?? null,
    from,
    to,
    cursor: cursorText === undefined ? null : parseCursor(cursorText),
    limit,
  };
}

/** The query string of these filters (for links and forms), without the page. */
export function filterParams(f: JobFilters): Record<string, string> {
  const out: Record<string, string> = {};
  if (f.tenant !== null) out.tenant = f.tenant;
  if (f.status !== null) out.status = f.status;
  if (f.step !== null) out.step = f.step;
  if (f.from !== null) out.from = f.from.toISOString();
  if (f.to !== null) out.to = f.to.toISOString();
  return out;
}

export function queryString(params: Record<string, string>): string {
  const s = new URLSearchParams(params).toString();
  return s === '' ? '' : `?${s}`;
}

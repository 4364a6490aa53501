/** Small text helpers of the templates (plain strings: the template engine escapes them). */

/** "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min", "3 d 4 h". */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  const v = Math.max(0, ms);
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(1)} s`;
  const s = Math.floor(v / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  const m = Math.floor(s / 60);
  if (m < 24 * 60) return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
  const h = Math.floor(m / 60);
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** How long ago, coarse: "just now", "42 s", "5 min", "3 h", "2 d". */
export function formatAge(from: Date | string, now: Date = new Date()): string {
  const ms = now.getTime() - new Date(from).getTime();
  if (!Number.isFinite(ms) || ms < 5_000) return 'just now';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86_400)} d`;
}

/** ISO 8601 (UTC) of a date or timestamp string, or '' for none. */
export function iso(d: Date | string | null | undefined): string {
  if (d === null || d === undefined) return '';
  const t = new Date(d);
  return Number.isNaN(t.getTime()) ? '' : t.toISOString();
}

/** "2026-03-01 09:30:15 UTC" (the page's script shows it in the browser's time zone). */
export function formatTime(d: Date | string | null | undefined): string {
  const s = iso(d);
  return s === '' ? '–' : `${s.slice(0, 10)} ${s.slice(11, 19)} UTC`;
}

/** The first block of a UUID: enough to tell jobs apart on a page. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** A number with `digits` decimals, or '–'. */
export function num(v: number | null | undefined, digits = 2): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

/** A share 0..1 as a percentage. */
export function pct(v: number | null | undefined, digits = 0): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(digits)}\u00a0%`;
}

/** A run's error as shown: `brief` on its line, `full` (the stored text) on demand when they differ. */
export interface ErrorText {
  brief: string;
  full: string;
}

const ERROR_FIELD_RE = /"error"\s*:\s*"((?:[^"\\]|\\.)*)"/;

/**
 * A stored error as shown (docs/dashboard.md, "Job page"). The engine stores a
 * stage's answer as `stage answered 422: {"error":"..."}` (its body cut at 200
 * or 500 characters): the brief is the text before the body and the body's
 * `error` field, read as JSON, or from the cut text when the cut broke the JSON.
 * Any other text is its own brief.
 */
export function errorText(error: string | null | undefined): ErrorText | null {
  if (error === null || error === undefined || error === '') return null;
  const at = error.indexOf('{');
  if (at < 0) return { brief: error, full: error };
  const prefix = error.slice(0, at).trim();
  let field: string | null = null;
  try {
    const body: unknown = JSON.parse(error.slice(at, error.lastIndexOf('}') + 1));
    if (body && typeof body === 'object' && typeof (body as { error?: unknown }).error === 'string') {
      field = (body as { error: string }).error;
    }
  } catch {
    const m = ERROR_FIELD_RE.exec(error.slice(at));
    if (m) {
      try {
        field = JSON.parse(`"${m[1]}"`) as string;
      } catch {
        field = null;
      }
    }
  }
  if (field === null) return { brief: error, full: error };
  return { brief: prefix === '' ? field : `${prefix} ${field}`, full: error };
}

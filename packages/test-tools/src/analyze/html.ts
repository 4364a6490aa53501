/**
 * The analyzer's HTML rendering (`feedly-pipeline analyze --html`, the demo's
 * report): one self-contained page.
 */
import { formatDuration } from '../monitor.js';
import type { AnalyzeReport } from './model.js';
import { f2 } from './text.js';

const escapeHtml = (s: unknown) =>
  String(s ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');

function mimeOf(bytes: Uint8Array): string {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return 'image/png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return 'image/jpeg';
  if (bytes[0] === 0x52 && bytes[8] === 0x57) return 'image/webp';
  return 'application/octet-stream';
}

/**
 * A self-contained HTML report: each creative embedded as a base64 data URL
 * beside its scores, the chosen variant highlighted, the feed image and text.
 * `readImage` reads a storage key (`read` of `@feedlyai/storage`).
 */
export async function renderHtml(
  report: AnalyzeReport,
  readImage: (key: string) => Promise<Uint8Array> | Uint8Array,
): Promise<string> {
  const img = async (key: string | null | undefined, alt: string, cls = 'creative') => {
    if (!key) return '<div class="missing">no image</div>';
    try {
      const bytes = await readImage(key);
      return `<img class="${cls}" alt="${escapeHtml(alt)}" src="data:${mimeOf(bytes)};base64,${Buffer.from(bytes).toString('base64')}">`;
    } catch (err) {
      return `<div class="missing">${escapeHtml(key)}: ${escapeHtml((err as Error).message)}</div>`;
    }
  };
  const parts: string[] = [];
  for (const j of report.jobs) {
    parts.push(`<section class="job"><h2>Job <code>${escapeHtml(j.jobId)}</code></h2>`);
    parts.push(
      `<p>tenant <b>${escapeHtml(j.tenantId)}</b> · ${escapeHtml(j.step)}/${escapeHtml(j.status)}` +
        `${j.failureReason ? ` · <span class="bad">failed: ${escapeHtml(j.failureReason)}</span>` : ''}` +
        `${j.durationMs !== null ? ` · took ${escapeHtml(formatDuration(j.durationMs))}` : ''}</p>`,
    );
    if (j.inputs) {
      parts.push(`<p class="inputs">tone <b>${escapeHtml(j.inputs.tone)}</b> · ${escapeHtml(j.inputs.descKor)}</p>`);
    }
    parts.push('<div class="variants">');
    for (const v of j.variants) {
      const e = v.evaluations;
      const rows: string[] = [];
      const row = (k: string, val: string, method?: string | null) =>
        rows.push(
          `<tr><th>${escapeHtml(k)}</th><td>${val}</td><td class="method">${escapeHtml(method ?? '')}</td></tr>`,
        );
      if (e.judge)
        row(
          'VLM judge',
          `${f2(e.judge.score, 1)} / 10${e.judge.problems.length ? `<br><small>${escapeHtml(e.judge.problems.join('; '))}</small>` : ''}`,
          e.judge.method,
        );
      if (e.ocr) {
        for (const l of e.ocr.lines) {
          row(`OCR ${l.role} (${l.lang})`, `CER ${f2(l.cer)} · read “${escapeHtml(l.read)}”`, e.ocr.method);
        }
      }
      if (e.readability) {
        row(
          'Readability',
          `${e.readability.pass ? '<span class="good">pass</span>' : '<span class="bad">fail</span>'} · contrast ${f2(e.readability.minContrast, 1)} · clutter ${f2(e.readability.maxClutter)}`,
          e.readability.method,
        );
      }
      if (e.iou)
        row('IoU (text vs objects)', `max ${f2(e.iou.maxIou)} · over text ${f2(e.iou.maxIoText)}`, e.iou.method);
      if (v.planner) {
        row(
          'Planner',
          `${v.planner.proposals.length} proposals, chosen rank ${v.planner.chosenRank ?? '-'}` +
            `<br><small>${v.planner.proposals
              .filter((p, i) => p.chosen || i < 5)
              .map(
                (p) =>
                  `${p.chosen ? '<b>' : ''}#${p.rank} ${f2(p.score, 3)}${p.rejected ? ` (${escapeHtml(p.rejected)})` : ''}${p.chosen ? '</b>' : ''}`,
              )
              .join(' · ')}</small>`,
          v.planner.method,
        );
      }
      if (v.detections) {
        row(
          'Detections',
          escapeHtml(v.detections.items.map((d) => `${d.label} ${f2(d.score)}`).join(', ') || 'none'),
          v.detections.method,
        );
      }
      if (v.overlay) {
        row(
          'Text',
          v.overlay.lines.map((l) => `${escapeHtml(l.role)}: “${escapeHtml(l.text)}” ${l.fontSize}px`).join('<br>'),
          v.overlay.method,
        );
      }
      parts.push(
        `<article class="variant${v.chosen ? ' chosen' : ''}" data-variant-id="${escapeHtml(v.id)}">` +
          `<h3>Variant #${v.order}${v.chosen ? ' <span class="badge">chosen</span>' : ''}</h3>` +
          `<div class="pair"><div>${await img(v.overlay?.imageKey, `creative of variant ${v.order}`)}` +
          `<p class="path">${escapeHtml(v.overlay?.imagePath ?? '')}</p></div>` +
          `<table>${rows.join('') || `<tr><td>${escapeHtml(v.step)}/${escapeHtml(v.status)}: no results yet</td></tr>`}</table></div>` +
          `</article>`,
      );
    }
    parts.push('</div>');
    if (j.adCopy || j.feed) {
      parts.push('<section class="feed"><h3>Instagram post</h3><div class="pair">');
      if (j.feed) parts.push(`<div>${await img(j.feed.feedImageKey, 'Instagram feed image', 'feedimg')}</div>`);
      parts.push('<div>');
      if (j.adCopy) {
        parts.push(
          `<p><b>${escapeHtml(j.adCopy.headlineEng)}</b>${j.adCopy.taglineKor ? ` / ${escapeHtml(j.adCopy.taglineKor)}` : ''}</p>`,
        );
        if (j.adCopy.adCopyKor)
          parts.push(
            `<p>${escapeHtml(j.adCopy.adCopyKor)} <span class="method">${escapeHtml(j.adCopy.korMethod)}</span></p>`,
          );
      }
      if (j.feed) {
        parts.push(`<p class="caption">${escapeHtml(j.feed.caption).replace(/\n/g, '<br>')}</p>`);
        parts.push(`<p class="tags">${escapeHtml(j.feed.hashtags.join(' '))}</p>`);
      }
      parts.push('</div></div></section>');
    }
    parts.push('</section>');
  }
  const title = report.query.jobId ? `job ${report.query.jobId}` : `tenant ${report.query.tenantId}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>FeedlyAI pipeline report: ${escapeHtml(title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;background:#fafafa}
code{font-size:12px}.variants{display:flex;flex-direction:column;gap:1em}
.variant{background:#fff;border:2px solid #ddd;border-radius:8px;padding:1em}
.variant.chosen{border-color:#2a7;box-shadow:0 0 0 3px #2a73}
.badge{background:#2a7;color:#fff;border-radius:4px;padding:0 .4em;font-size:12px}
.pair{display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap}
img.creative{max-width:480px;border:1px solid #ccc}img.feedimg{max-width:400px;border:1px solid #ccc}
table{border-collapse:collapse}th{text-align:left;padding:.2em .8em .2em 0;vertical-align:top}
td{padding:.2em .8em .2em 0;vertical-align:top}.method{color:#888;font-size:12px}
.good{color:#2a7}.bad{color:#c33}.path{color:#888;font-size:11px;word-break:break-all;max-width:480px}
.missing{width:240px;height:160px;background:#eee;color:#888;display:flex;align-items:center;justify-content:center}
.feed{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1em;margin-top:1em}
</style></head><body>
<h1>FeedlyAI pipeline report</h1>
<p>${escapeHtml(title)} · generated ${escapeHtml(report.generatedAt)}</p>
${report.jobs.length === 0 ? '<p>No jobs found.</p>' : parts.join('\n')}
</body></html>
`;
}

/**
 * The analyzer's text renderings: the full report (`feedly-pipeline analyze`)
 * and the demo's short summary.
 */
import { formatDuration } from '../monitor.js';
import type { AnalyzedJob, AnalyzedVariant, AnalyzeReport } from './model.js';

/** A number with `d` decimals, '-' when missing. */
export const f2 = (n: number | null | undefined, d = 2) =>
  n === null || n === undefined || Number.isNaN(n) ? '-' : n.toFixed(d);

/** A short per-variant score line: judge, OCR CER, readability, IoU. */
export function scoreLine(v: AnalyzedVariant): string {
  const e = v.evaluations;
  const parts = [
    `judge ${e.judge ? `${f2(e.judge.score, 1)}/10 (${e.judge.method})` : '-'}`,
    `OCR CER ${e.ocr ? `${f2(e.ocr.meanCer)} (${e.ocr.method})` : '-'}`,
    `readability ${e.readability ? `${e.readability.pass ? 'pass' : 'FAIL'} contrast ${f2(e.readability.minContrast, 1)} (${e.readability.method})` : '-'}`,
    `IoU max ${e.iou ? `${f2(e.iou.maxIou)} (${e.iou.method})` : '-'}`,
  ];
  return parts.join(' · ');
}

export function renderText(report: AnalyzeReport): string {
  const out: string[] = [];
  if (report.jobs.length === 0) {
    out.push(
      `no jobs found for ${report.query.jobId ? `job ${report.query.jobId}` : `tenant ${report.query.tenantId}`}`,
    );
    return out.join('\n');
  }
  for (const j of report.jobs) {
    out.push(`== Job ${j.jobId} (tenant ${j.tenantId})`);
    out.push(
      `   state ${j.step}/${j.status}${j.failureReason ? ` failed for good: ${j.failureReason}` : ''}` +
        `  created ${j.createdAt}${j.durationMs !== null ? `  took ${formatDuration(j.durationMs)}` : ''}`,
    );
    if (j.inputs) {
      out.push(
        `   inputs: tone ${j.inputs.tone ?? '-'}, product ${j.inputs.productName ?? '-'}, image ${j.inputs.imageKey ?? '-'}`,
      );
      if (j.inputs.descKor) out.push(`   desc_kor: ${j.inputs.descKor}`);
    }
    for (const v of j.variants) {
      out.push(
        `-- Variant #${v.order} ${v.id}${v.chosen ? '  [CHOSEN for the feed]' : ''}  ${v.step}/${v.status}` +
          `${v.attempt > 1 ? ` attempt ${v.attempt}` : ''}${v.lastError ? `  last error: ${v.lastError}` : ''}`,
      );
      if (v.vlmAnalysis) {
        out.push(
          `   vlm_analyze (${v.vlmAnalysis.method}${v.vlmAnalysis.model ? ` ${v.vlmAnalysis.model}` : ''}): ` +
            `${v.vlmAnalysis.usable ? 'usable' : 'NOT usable'}; ${v.vlmAnalysis.description}`,
        );
      }
      if (v.detections) {
        out.push(
          `   detections (${v.detections.method}): ${v.detections.count}` +
            `${v.detections.items.length ? ` — ${v.detections.items.map((d) => `${d.label} ${f2(d.score)}`).join(', ')}` : ''}`,
        );
      }
      if (v.planner) {
        out.push(
          `   planner (${v.planner.method}): ${v.planner.proposals.length} proposals, chosen rank ${v.planner.chosenRank ?? '-'}`,
        );
        // The chosen proposal and the best few others; --json has all of them.
        const shown = v.planner.proposals.filter((p, i) => p.chosen || i < 3);
        for (const p of shown) {
          out.push(
            `     ${p.chosen ? '*' : ' '} rank ${p.rank} score ${f2(p.score, 3)} region ${p.region.x},${p.region.y} ${p.region.w}x${p.region.h}` +
              `${p.rejected ? ` rejected: ${p.rejected}` : ''}`,
          );
        }
        const hidden = v.planner.proposals.length - shown.length;
        if (hidden > 0) {
          const rejected = v.planner.proposals.filter((p) => p.rejected).length;
          out.push(
            `       ... ${hidden} more (${rejected} of all ${v.planner.proposals.length} rejected; --json lists them)`,
          );
        }
        if (v.planner.previewPath) out.push(`   planner image: ${v.planner.previewPath}`);
      }
      if (v.overlay) {
        out.push(
          `   overlay (${v.overlay.method}): ${v.overlay.width}x${v.overlay.height}, proposal rank ${v.overlay.proposalRank ?? '-'}`,
        );
        for (const l of v.overlay.lines) {
          out.push(
            `     ${l.role}: "${l.text}" at ${l.box.x},${l.box.y} ${l.box.w}x${l.box.h}, ${l.fontSize}px ${l.color}`,
          );
        }
        out.push(`   creative: ${v.overlay.imagePath}`);
      }
      const e = v.evaluations;
      if (e.ocr) {
        for (const l of e.ocr.lines) {
          out.push(
            `   ocr (${e.ocr.method}) ${l.role}/${l.lang}: CER ${f2(l.cer)} conf ${f2(l.confidence)} read "${l.read}"`,
          );
        }
      }
      if (e.readability) {
        out.push(
          `   readability (${e.readability.method}): ${e.readability.pass ? 'pass' : 'FAIL'}, min contrast ${f2(e.readability.minContrast)}, max clutter ${f2(e.readability.maxClutter)}`,
        );
      }
      if (e.iou) out.push(`   iou (${e.iou.method}): max IoU ${f2(e.iou.maxIou)}, max IoText ${f2(e.iou.maxIoText)}`);
      if (e.judge) {
        out.push(
          `   vlm_judge (${e.judge.method}${e.judge.model ? ` ${e.judge.model}` : ''}): ${f2(e.judge.score, 1)}/10` +
            `${e.judge.problems.length ? `; problems: ${e.judge.problems.join('; ')}` : ''}`,
        );
      }
    }
    if (j.adCopy) {
      out.push(
        `-- Ad copy: "${j.adCopy.headlineEng}" (${j.adCopy.engMethod})${j.adCopy.taglineKor ? ` / ${j.adCopy.taglineKor}` : ''}`,
      );
      if (j.adCopy.adCopyKor) out.push(`   Korean (${j.adCopy.korMethod ?? '-'}): ${j.adCopy.adCopyKor}`);
    }
    if (j.feed) {
      out.push(`-- Instagram feed (${j.feed.method}):`);
      out.push(`   caption: ${j.feed.caption.replace(/\s*\n\s*/g, ' ')}`);
      out.push(`   hashtags: ${j.feed.hashtags.join(' ')}`);
      out.push(`   feed image: ${j.feed.feedImagePath}`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** The short summary the demo prints: one line per variant plus the feed. */
export function renderSummary(j: AnalyzedJob): string {
  const lines = j.variants.map((v) => `  #${v.order}${v.chosen ? ' (chosen)' : '         '} ${scoreLine(v)}`);
  if (j.feed)
    lines.push(`  caption: ${j.feed.caption.replace(/\s*\n\s*/g, ' ')}`, `  hashtags: ${j.feed.hashtags.join(' ')}`);
  return lines.join('\n');
}

/**
 * The result analyzer of seed 003: everything the stage server stored for a
 * job (or a tenant's latest jobs), read from the result tables of migration
 * 0002, as one report object; rendered as text, JSON, or a self-contained
 * HTML page with the creatives themselves beside their scores.
 */
import { resolve as resolvePath } from 'node:path';
import { FINAL_STEP } from '@feedlyai/pipeline-core';
import type pg from 'pg';
import { formatDuration } from './monitor.js';

type Db = Pick<pg.Pool, 'query'>;
type Row = Record<string, unknown>;

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface AnalyzedVariant {
  id: string;
  order: number;
  step: string;
  status: string;
  attempt: number;
  lastError: string | null;
  givenUp: boolean;
  chosen: boolean;
  vlmAnalysis: {
    method: string;
    model: string | null;
    usable: boolean;
    description: string;
    dominantColors: string[];
    problems: string[];
  } | null;
  detections: {
    method: string;
    model: string | null;
    count: number;
    items: Array<{ label: string; score: number; box: Box }>;
  } | null;
  planner: {
    method: string;
    proposals: Array<{
      rank: number;
      score: number;
      components: Record<string, number>;
      rejected: string | null;
      chosen: boolean;
      region: Box;
    }>;
    chosenRank: number | null;
    previewKey: string | null;
    previewPath: string | null;
  } | null;
  overlay: {
    method: string;
    headline: string;
    tagline: string | null;
    treatment: unknown;
    lines: Array<{ role: string; text: string; box: Box; fontSize: number; color: string }>;
    proposalRank: number | null;
    imageKey: string;
    imagePath: string;
    width: number;
    height: number;
  } | null;
  evaluations: {
    ocr: {
      method: string;
      lines: Array<{ role: string; lang: string; expected: string; read: string; cer: number; confidence: number }>;
      meanCer: number;
    } | null;
    readability: {
      method: string;
      pass: boolean;
      minContrast: number | null;
      maxClutter: number | null;
      thresholds: unknown;
      lines: Array<{ role: string; contrastP5: number; contrastMedian: number; clutter: number; pass: boolean }>;
    } | null;
    iou: { method: string; maxIou: number; maxIoText: number; pairs: unknown[] } | null;
    judge: { method: string; model: string | null; score: number; problems: string[]; rationale: string } | null;
  };
}

export interface AnalyzedJob {
  jobId: string;
  tenantId: string;
  step: string;
  status: string;
  attempt: number;
  done: boolean;
  failureReason: string | null;
  lastError: string | null;
  createdAt: string;
  completedAt: string | null;
  durationMs: number | null;
  inputs: {
    descKor: string | null;
    tone: string | null;
    adCopyEng: string | null;
    taglineKor: string | null;
    productName: string | null;
    imageKey: string | null;
  } | null;
  variants: AnalyzedVariant[];
  adCopy: {
    headlineEng: string;
    engMethod: string;
    taglineKor: string | null;
    adCopyKor: string | null;
    korMethod: string | null;
    korModel: string | null;
  } | null;
  feed: {
    method: string;
    model: string | null;
    caption: string;
    hashtags: string[];
    chosenVariantId: string | null;
    scores: unknown;
    feedImageKey: string;
    feedImagePath: string;
  } | null;
  stepTimings: Array<{ variantOrder: number | null; step: string; attempt: number; durationMs: number | null }>;
}

export interface AnalyzeReport {
  generatedAt: string;
  query: { jobId?: string; tenantId?: string; limit?: number };
  jobs: AnalyzedJob[];
}

export interface AnalyzeOptions {
  jobId?: string;
  tenantId?: string;
  limit?: number;
  storageDir?: string;
}

const num = (v: unknown): number => (v === null || v === undefined ? Number.NaN : Number(v));
const arr = <T>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);
const iso = (v: unknown): string | null => (v ? new Date(v as string).toISOString() : null);

/** Rows of the newest run per variant (rows of one run share created_at: one transaction). */
async function newestRuns(db: Db, table: string, jobIds: string[]): Promise<Map<string, Row[]>> {
  const r = await db.query(
    `SELECT t.* FROM ${table} t
      WHERE t.job_id = ANY($1::uuid[])
        AND t.created_at = (SELECT max(created_at) FROM ${table} u WHERE u.job_variants_id = t.job_variants_id)
      ORDER BY t.job_variants_id, t.id`,
    [jobIds],
  );
  const out = new Map<string, Row[]>();
  for (const row of r.rows) {
    const k = String(row.job_variants_id);
    const list = out.get(k) ?? [];
    list.push(row);
    out.set(k, list);
  }
  return out;
}

function newest(rows: Row[] | undefined): Row | undefined {
  if (!rows || rows.length === 0) return undefined;
  return rows.reduce((a, b) => (num(b.id) > num(a.id) ? b : a));
}

export async function analyzeJobs(db: Db, o: AnalyzeOptions): Promise<AnalyzeReport> {
  const storageDir = resolvePath(o.storageDir ?? '.data/storage');
  const toPath = (key: string) => (/^https?:\/\//.test(key) ? key : resolvePath(storageDir, key));
  let jobRows: Row[];
  if (o.jobId) {
    jobRows = (await db.query('SELECT * FROM jobs WHERE job_id = $1', [o.jobId])).rows;
  } else if (o.tenantId) {
    jobRows = (
      await db.query('SELECT * FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC, job_id LIMIT $2', [
        o.tenantId,
        o.limit ?? 5,
      ])
    ).rows;
  } else throw new Error('analyze needs a job id or a tenant id');
  const query: AnalyzeReport['query'] = o.jobId
    ? { jobId: o.jobId }
    : { tenantId: o.tenantId as string, limit: o.limit ?? 5 };
  const ids = jobRows.map((j) => String(j.job_id));
  if (ids.length === 0) return { generatedAt: new Date().toISOString(), query, jobs: [] };

  const variants = (
    await db.query(
      `SELECT * FROM jobs_variants WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, creation_order, job_variants_id`,
      [ids],
    )
  ).rows;
  const inputs = (
    await db.query(
      `SELECT DISTINCT ON (i.job_id) i.*, t.code AS tone_code, a.image_url
         FROM job_inputs i LEFT JOIN tone_styles t USING (tone_style_id)
         LEFT JOIN image_assets a ON a.image_asset_id = i.img_asset_id
        WHERE i.job_id = ANY($1::uuid[]) ORDER BY i.job_id, i.created_at DESC`,
      [ids],
    )
  ).rows;
  const [vlm, det, plan, ovl, judge, ocr, read, iou] = await Promise.all(
    [
      'stage_vlm_analyses',
      'stage_detections',
      'stage_planner_proposals',
      'stage_overlays',
      'stage_vlm_judgements',
      'stage_ocr_evals',
      'stage_readability_evals',
      'stage_iou_evals',
    ].map((t) => newestRuns(db, t, ids)),
  );
  const copies = (await db.query('SELECT * FROM job_ad_copies WHERE job_id = ANY($1::uuid[])', [ids])).rows;
  const feeds = (
    await db.query(
      `SELECT DISTINCT ON (job_id) * FROM stage_instagram_feeds WHERE job_id = ANY($1::uuid[])
        ORDER BY job_id, created_at DESC, id DESC`,
      [ids],
    )
  ).rows;
  const runs = (
    await db.query(
      `SELECT DISTINCT ON (job_id, coalesce(job_variants_id::text, ''), step)
              job_id, job_variants_id, step, attempt,
              coalesce(duration_ms, (extract(epoch FROM finished_at - claimed_at) * 1000)::int) AS duration_ms
         FROM pipeline_step_runs WHERE job_id = ANY($1::uuid[])
        ORDER BY job_id, coalesce(job_variants_id::text, ''), step, claimed_at DESC, run_id DESC`,
      [ids],
    )
  ).rows;

  const jobs: AnalyzedJob[] = jobRows.map((j) => {
    const jobId = String(j.job_id);
    const feed = feeds.find((f) => f.job_id === jobId);
    const chosenVariantId = (feed?.chosen_variant_id as string | null) ?? null;
    const vs = variants.filter((v) => v.job_id === jobId);
    const orderOf = new Map(vs.map((v) => [String(v.job_variants_id), Number(v.creation_order)]));
    const analyzed: AnalyzedVariant[] = vs.map((v) => {
      const id = String(v.job_variants_id);
      const a = newest(vlm.get(id));
      const d = newest(det.get(id));
      const proposals = plan.get(id) ?? [];
      const chosenProposal = proposals.find((p) => p.chosen);
      const o1 = newest(ovl.get(id));
      const jg = newest(judge.get(id));
      const ocrLines = ocr.get(id) ?? [];
      const rd = newest(read.get(id));
      const io = newest(iou.get(id));
      const layout = (o1?.layout ?? {}) as { lines?: unknown[] };
      return {
        id,
        order: Number(v.creation_order),
        step: String(v.current_step),
        status: String(v.status),
        attempt: Number(v.attempt),
        lastError: (v.last_error as string | null) ?? null,
        givenUp: v.given_up_at !== null && v.given_up_at !== undefined,
        chosen: chosenVariantId === id,
        vlmAnalysis: a
          ? {
              method: String(a.method),
              model: (a.model as string | null) ?? null,
              usable: Boolean(a.usable),
              description: String(a.description),
              dominantColors: arr<string>(a.dominant_colors),
              problems: arr<string>(a.problems),
            }
          : null,
        detections: d
          ? {
              method: String(d.method),
              model: (d.model as string | null) ?? null,
              count: Number(d.detection_count),
              items: arr<{ label: string; score: number; box: Box }>(d.detections).map((x) => ({
                label: x.label,
                score: x.score,
                box: x.box,
              })),
            }
          : null,
        planner: proposals.length
          ? {
              method: String(proposals[0]?.method),
              proposals: proposals
                .map((p) => ({
                  rank: Number(p.rank),
                  score: num(p.score),
                  components: (p.components ?? {}) as Record<string, number>,
                  rejected: (p.rejected_reason as string | null) ?? null,
                  chosen: Boolean(p.chosen),
                  region: p.region as Box,
                }))
                .sort((x, y) => x.rank - y.rank),
              chosenRank: chosenProposal ? Number(chosenProposal.rank) : null,
              previewKey: (chosenProposal?.preview_image_key as string | null) ?? null,
              previewPath: chosenProposal?.preview_image_key ? toPath(String(chosenProposal.preview_image_key)) : null,
            }
          : null,
        overlay: o1
          ? {
              method: String(o1.method),
              headline: String(o1.headline),
              tagline: (o1.tagline as string | null) ?? null,
              treatment: o1.treatment,
              lines: arr<{ role: string; text: string; box: Box; fontSize: number; color: string }>(layout.lines).map(
                (l) => ({ role: l.role, text: l.text, box: l.box, fontSize: l.fontSize, color: l.color }),
              ),
              proposalRank: o1.proposal_rank === null ? null : Number(o1.proposal_rank),
              imageKey: String(o1.image_key),
              imagePath: toPath(String(o1.image_key)),
              width: Number(o1.width),
              height: Number(o1.height),
            }
          : null,
        evaluations: {
          ocr: ocrLines.length
            ? {
                method: String(ocrLines[0]?.method),
                lines: ocrLines.map((l) => ({
                  role: String(l.role),
                  lang: String(l.lang),
                  expected: String(l.expected),
                  read: String(l.read),
                  cer: num(l.cer),
                  confidence: num(l.confidence),
                })),
                meanCer: ocrLines.reduce((n, l) => n + num(l.cer), 0) / ocrLines.length,
              }
            : null,
          readability: rd
            ? {
                method: String(rd.method),
                pass: Boolean(rd.pass),
                minContrast: rd.min_contrast === null ? null : num(rd.min_contrast),
                maxClutter: rd.max_clutter === null ? null : num(rd.max_clutter),
                thresholds: rd.thresholds,
                lines: arr(rd.lines),
              }
            : null,
          iou: io
            ? {
                method: String(io.method),
                maxIou: num(io.max_iou),
                maxIoText: num(io.max_io_text),
                pairs: arr(io.pairs),
              }
            : null,
          judge: jg
            ? {
                method: String(jg.method),
                model: (jg.model as string | null) ?? null,
                score: num(jg.score),
                problems: arr<string>(jg.problems),
                rationale: String(jg.rationale ?? ''),
              }
            : null,
        },
      };
    });
    const input = inputs.find((i) => i.job_id === jobId);
    const copy = copies.find((c) => c.job_id === jobId);
    const created = new Date(j.created_at as string).getTime();
    return {
      jobId,
      tenantId: String(j.tenant_id),
      step: String(j.current_step),
      status: String(j.status),
      attempt: Number(j.attempt),
      done: j.current_step === FINAL_STEP && j.status === 'done',
      failureReason: (j.failure_reason as string | null) ?? null,
      lastError: (j.last_error as string | null) ?? null,
      createdAt: iso(j.created_at) as string,
      completedAt: iso(j.completed_at),
      durationMs: j.completed_at ? new Date(j.completed_at as string).getTime() - created : null,
      inputs: input
        ? {
            descKor: (input.desc_kor as string | null) ?? null,
            tone: (input.tone_code as string | null) ?? null,
            adCopyEng: (input.ad_copy_eng as string | null) ?? null,
            taglineKor: (input.tagline_kor as string | null) ?? null,
            productName: (input.product_name as string | null) ?? null,
            imageKey: (input.image_url as string | null) ?? null,
          }
        : null,
      variants: analyzed,
      adCopy: copy
        ? {
            headlineEng: String(copy.headline_eng),
            engMethod: String(copy.eng_method),
            taglineKor: (copy.tagline_kor as string | null) ?? null,
            adCopyKor: (copy.ad_copy_kor as string | null) ?? null,
            korMethod: (copy.kor_method as string | null) ?? null,
            korModel: (copy.kor_model as string | null) ?? null,
          }
        : null,
      feed: feed
        ? {
            method: String(feed.method),
            model: (feed.model as string | null) ?? null,
            caption: String(feed.caption),
            hashtags: arr<string>(feed.hashtags).map(String),
            chosenVariantId,
            scores: feed.scores,
            feedImageKey: String(feed.feed_image_key),
            feedImagePath: toPath(String(feed.feed_image_key)),
          }
        : null,
      stepTimings: runs
        .filter((r) => r.job_id === jobId)
        .map((r) => ({
          variantOrder: r.job_variants_id ? (orderOf.get(String(r.job_variants_id)) ?? null) : null,
          step: String(r.step),
          attempt: Number(r.attempt),
          durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
        })),
    };
  });
  return { generatedAt: new Date().toISOString(), query, jobs };
}

// ---------------------------------------------------------------- text

const f2 = (n: number | null | undefined, d = 2) =>
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

// ---------------------------------------------------------------- HTML

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

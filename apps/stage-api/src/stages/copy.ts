/**
 * The job's ad copy: the English headline (input, LLM or template; decided
 * once per job and shared by every variant), the Korean copy and the
 * Instagram caption/hashtags (LLM or template). Templates and wording rules
 * come from ../text (the creative engine); this file decides which source
 * applies and validates the LLM's answers.
 */
import { z } from 'zod';
import {
  AD_COPY_SCHEMA,
  buildAdCopyPrompt,
  buildCaptionPrompt,
  CAPTION_MAX_CHARS,
  CAPTION_SCHEMA,
  HASHTAGS_MAX as TEXT_HASHTAGS_MAX,
  HEADLINE_MAX_CHARS,
  KOREAN_COPY_SCHEMA,
  templateCaption,
  templateHashtags,
  templateHeadline,
  templateKoreanCopy,
} from '../text/index.js';
import type { CallOptions, ChatClient } from '../clients/chat.js';
import { type AdCopyRow, ensureAdCopy, getAdCopy, getJobInputs, type JobInputs } from '../db/queries.js';
import type { Queryable } from '@feedlyai/pipeline-core';

export const CAPTION_MAX = CAPTION_MAX_CHARS;
export const HASHTAGS_MAX = TEXT_HASHTAGS_MAX;
export const HEADLINE_MAX = HEADLINE_MAX_CHARS;

/** The input of the text templates. */
export function textInputs(inputs: JobInputs) {
  return {
    descKor: inputs.descKor ?? '',
    productName: inputs.productName,
    tone: inputs.tone.code,
    toneDescription: inputs.tone.description,
  };
}

export async function requireInputs(db: Queryable, jobId: string): Promise<JobInputs> {
  const inputs = await getJobInputs(db, jobId);
  if (!inputs) throw new Error(`job ${jobId} has no job_inputs row (desc_kor, tone, image)`);
  return inputs;
}

const headlineAnswer = z.object({ headline: z.string().trim().min(2).max(HEADLINE_MAX) });

function toneLine(inputs: JobInputs): string {
  const t = inputs.tone;
  return t.code ? `Tone: ${t.name ?? t.code}${t.description ? ` (${t.description})` : ''}.` : 'Tone: friendly.';
}

/**
 * The job's English headline, decided once: from job_inputs.ad_copy_eng
 * (method 'input'), else by the LLM from desc_kor ('llm'), else the template
 * ('template'). INSERT ... ON CONFLICT DO NOTHING then read back, so two
 * variants racing here share one headline.
 */
export async function resolveAdCopy(
  db: Queryable,
  llm: ChatClient | null,
  jobId: string,
  opts: CallOptions = {},
): Promise<AdCopyRow> {
  const existing = await getAdCopy(db, jobId);
  if (existing) return existing;
  const inputs = await requireInputs(db, jobId);
  let headline: string;
  let method: string;
  let model: string | null = null;
  if (inputs.adCopyEng) {
    headline = inputs.adCopyEng;
    method = 'input';
  } else if (llm && inputs.descKor) {
    const a = await llm.completeJson(
      {
        ...buildAdCopyPrompt(textInputs(inputs)),
        schemaName: 'ad_headline',
        jsonSchema: AD_COPY_SCHEMA,
        validate: headlineAnswer,
        maxTokens: 100,
      },
      opts,
    );
    headline = a.value.headline;
    method = 'llm';
    model = a.model;
  } else {
    headline = templateHeadline(textInputs(inputs));
    method = 'template';
  }
  return await ensureAdCopy(db, jobId, { headline, method, model, taglineKor: inputs.taglineKor });
}

const koreanAnswer = z.object({ ad_copy_kor: z.string().trim().min(2).max(300) });

export async function koreanCopy(
  llm: ChatClient | null,
  inputs: JobInputs,
  headline: string,
  opts: CallOptions = {},
): Promise<{ text: string; method: string; model: string | null }> {
  if (!llm) return { text: templateKoreanCopy({ ...textInputs(inputs), headline }), method: 'template', model: null };
  const a = await llm.completeJson(
    {
      system: 'You are a Korean copywriter. Answer only with JSON matching the schema.',
      user:
        `English ad headline: ${headline}\nProduct description (Korean): ${inputs.descKor ?? ''}\n${toneLine(inputs)}\n` +
        'Turn the headline into natural Korean ad copy (one or two short sentences) in this tone. No hashtags.',
      schemaName: 'ad_copy_kor',
      jsonSchema: KOREAN_COPY_SCHEMA,
      validate: koreanAnswer,
      maxTokens: 300,
    },
    opts,
  );
  return { text: a.value.ad_copy_kor, method: 'llm', model: a.model };
}

const hashtag = z
  .string()
  .trim()
  .transform((s) => (s.startsWith('#') ? s : `#${s}`).replace(/\s+/g, ''))
  .refine((s) => s.length >= 2 && s.length <= 60, 'hashtag length');

const captionAnswer = z.object({
  caption: z.string().trim().min(10).max(CAPTION_MAX),
  hashtags: z.array(hashtag).min(1).max(HASHTAGS_MAX),
});

/** Keeps the caption and hashtags within Instagram's limits, whatever produced them. */
export function clampPost(caption: string, hashtags: string[]): { caption: string; hashtags: string[] } {
  const tags = [...new Set(hashtags.map((h) => (h.startsWith('#') ? h : `#${h}`).replace(/\s+/g, '')))]
    .filter((h) => h.length > 1)
    .slice(0, HASHTAGS_MAX);
  const c = [...caption.normalize('NFC')];
  return { caption: c.length > CAPTION_MAX ? c.slice(0, CAPTION_MAX).join('') : caption, hashtags: tags };
}

export async function instagramPost(
  llm: ChatClient | null,
  inputs: JobInputs,
  copy: { headline: string; adCopyKor: string | null },
  opts: CallOptions = {},
): Promise<{ caption: string; hashtags: string[]; method: string; model: string | null }> {
  if (!llm) {
    const args = { ...textInputs(inputs), headline: copy.headline, adCopyKor: copy.adCopyKor ?? '' };
    const post = clampPost(templateCaption(args), templateHashtags(args));
    return { ...post, method: 'template', model: null };
  }
  const a = await llm.completeJson(
    {
      ...buildCaptionPrompt({
        headlineEng: copy.headline,
        koreanCopy: copy.adCopyKor ?? '',
        descKor: inputs.descKor ?? '',
        tone: inputs.tone.code,
      }),
      schemaName: 'instagram_post',
      jsonSchema: CAPTION_SCHEMA,
      validate: captionAnswer,
      maxTokens: 900,
    },
    opts,
  );
  return { ...clampPost(a.value.caption, a.value.hashtags), method: 'llm', model: a.model };
}

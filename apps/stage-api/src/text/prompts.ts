/**
 * The prompts and JSON schemas sent to the OpenAI-compatible LLM and VLM
 * when one is configured (apps/stage-api/README.md).
 */
import { CAPTION_MAX_CHARS, HASHTAGS_MAX, HEADLINE_MAX_CHARS, type TemplateInputs } from './templates.js';

export interface PromptPair {
  system: string;
  user: string;
}

export const AD_COPY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['headline'],
  properties: { headline: { type: 'string', maxLength: HEADLINE_MAX_CHARS } },
} as const;

/** English headline from the Korean description (LLM). */
export function buildAdCopyPrompt(inputs: TemplateInputs): PromptPair {
  return {
    system: 'You are a senior advertising copywriter. Answer only with JSON matching the schema.',
    user:
      `Product description (Korean): ${inputs.descKor ?? ''}\n` +
      (inputs.productName ? `Product name: ${inputs.productName}\n` : '') +
      `Tone: ${inputs.tone ?? 'friendly'}${inputs.toneDescription ? ` (${inputs.toneDescription})` : ''}\n` +
      `Write one English ad headline for a social media creative: at most ${HEADLINE_MAX_CHARS} characters, ` +
      'no hashtags, no emoji, no quotation marks.',
  };
}

export const KOREAN_COPY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['ad_copy_kor'],
  properties: { ad_copy_kor: { type: 'string', maxLength: 300 } },
} as const;

export const CAPTION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['caption', 'hashtags'],
  properties: {
    caption: { type: 'string', maxLength: CAPTION_MAX_CHARS },
    hashtags: { type: 'array', items: { type: 'string' }, maxItems: HASHTAGS_MAX },
  },
} as const;

/** Instagram caption and hashtags (LLM). */
export function buildCaptionPrompt(inputs: {
  headlineEng: string;
  koreanCopy: string;
  descKor: string;
  tone?: string | null;
}): PromptPair {
  return {
    system: 'You write Instagram posts for brands. Answer only with JSON matching the schema.',
    user:
      `Product description (Korean): ${inputs.descKor}\nEnglish headline: ${inputs.headlineEng}\n` +
      `Korean ad copy: ${inputs.koreanCopy}\nTone: ${inputs.tone ?? 'friendly'}\n` +
      `Write the caption in Korean (at most ${CAPTION_MAX_CHARS} characters, 2 to 4 short lines, no hashtags in it) ` +
      `and 5 to 15 relevant hashtags (at most ${HASHTAGS_MAX}), Korean or English, each starting with #.`,
  };
}

export const VLM_ANALYZE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['usable', 'description', 'dominant_colors', 'problems'],
  properties: {
    usable: { type: 'boolean' },
    description: { type: 'string', maxLength: 400 },
    dominant_colors: { type: 'array', items: { type: 'string', pattern: '^#[0-9a-fA-F]{6}$' }, maxItems: 6 },
    problems: { type: 'array', items: { type: 'string' }, maxItems: 10 },
  },
} as const;

/** Stage 1: is this a usable product photo? */
export function buildVlmAnalyzePrompt(): PromptPair {
  return {
    system:
      'You are a photo editor reviewing product photos for advertising. Answer only with JSON matching the schema.',
    user:
      'Look at the attached product photo. Is it usable as the base of an ad creative (in focus, well exposed, ' +
      'the product clearly visible, no watermark or offensive content)? Give a one-sentence description, ' +
      '3 to 6 dominant colours as #rrggbb, and list concrete problems (empty when none).',
  };
}

export const VLM_JUDGE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['score', 'problems', 'rationale'],
  properties: {
    score: { type: 'number', minimum: 0, maximum: 10 },
    problems: { type: 'array', items: { type: 'string' }, maxItems: 10 },
    rationale: { type: 'string', maxLength: 600 },
  },
} as const;

/** Stage 2: judge the finished creative. */
export function buildVlmJudgePrompt(texts: { headline: string; tagline?: string | undefined }): PromptPair {
  return {
    system: 'You are an art director judging ad creatives. Answer only with JSON matching the schema.',
    user:
      `The attached creative should read: headline "${texts.headline}"` +
      (texts.tagline ? `, tagline "${texts.tagline}"` : '') +
      '. Score it from 0 to 10 for a brand Instagram post: legibility, text not covering the product, ' +
      'balance of the layout, overall appeal. List concrete problems (empty when none) and a short rationale.',
  };
}

/**
 * Hashtags without a model: the product's and its qualities' words in Korean
 * and English, the description's nouns, the tone's tags.
 */
import { HASHTAGS_MAX, KEYWORDS, productWords, QUALITIES, toneKey } from './templates.js';

/** A valid hashtag body: letters (any script), digits and underscores. */
function tagBody(s: string): string {
  return s.normalize('NFC').replace(/[^\p{L}\p{N}_]+/gu, '');
}

/** Words that are not worth a hashtag (pronouns, intensifiers, calls to action). */
const NOT_TAGS = new Set([
  '우리',
  '저희',
  '당신',
  '여러분',
  '모든',
  '정말',
  '너무',
  '아주',
  '링크',
  '프로필',
  '구매',
  '주문',
  '클릭',
  '지금',
  '오늘',
  '이번',
]);

/**
 * Nouns of a Korean description for hashtags, without a morphological
 * analyser: only Hangul words that carry a case particle that follows nouns
 * (원두로 -> 원두, 아침을 -> 아침, 산지에서 -> 산지), so that verb and
 * adjective forms (고른, 내린, 깨워, 어우러져, 맛있는) and adverbs (직접) are
 * not turned into tags. Topic and other particles (은/는/도/만) are not taken
 * as evidence: they also end verb forms.
 */
export function descriptionNouns(text: string): string[] {
  const out: string[] = [];
  for (const w of text.normalize('NFC').match(/[\uac00-\ud7af]{2,}/gu) ?? []) {
    const m = /^(.+?)(에서|으로|에게|을|를|와|과|의|에|로|이|가)$/u.exec(w);
    if (!m) continue;
    const noun = m[1] as string;
    const syllables = [...noun].length;
    if (syllables < 2 || syllables > 5) continue;
    // Stems and endings that make it a verb or adjective form after all (맛있+는, 만들+어, 함께+로).
    if (/(다|요|고|게|며|면|서|한|은|는|던|된|운|인|적|히|하|해|할|함|죠|네|있|없|았|었|겠|져|워|께)$/u.test(noun))
      continue;
    if (NOT_TAGS.has(noun)) continue;
    out.push(noun);
  }
  return out;
}

/** Hashtags without a model: at most 30, unique (case-insensitive), valid, Korean and English. */
export function templateHashtags(inputs: {
  descKor: string;
  headlineEng?: string;
  headline?: string;
  productName?: string | null | undefined;
  tone?: string | null | undefined;
  toneDescription?: string | null | undefined;
}): string[] {
  const desc = (inputs.descKor ?? '').normalize('NFC');
  const { product, productKo, quality } = productWords(desc);
  const tags: string[] = [];
  if (inputs.productName) tags.push(inputs.productName);
  for (const [ko, en] of KEYWORDS) if (desc.includes(ko)) tags.push(ko, en);
  for (const [ko, en] of QUALITIES) if (desc.includes(ko)) tags.push(ko, en);
  if (product && productKo) tags.push(product, `${productKo}스타그램`);
  if (quality) tags.push(quality);
  tags.push(...descriptionNouns(desc));
  const tone = toneKey(inputs.tone, inputs.toneDescription);
  tags.push(
    ...{
      friendly: ['일상', 'daily'],
      premium: ['프리미엄', 'premium'],
      playful: ['소확행', 'fun'],
      minimal: ['미니멀', 'minimal'],
      energetic: ['에너지', 'energy'],
      calm: ['감성', 'slowliving'],
    }[tone],
    '신상',
    '추천',
    'instagood',
    'newarrival',
  );
  const seen = new Set<string>();
  const out: string[] = [];
  for (const t of tags) {
    const body = tagBody(t);
    if (body.length < 2 || body.length > 50 || /^\d+$/.test(body)) continue;
    const key = body.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(`#${body}`);
    if (out.length >= HASHTAGS_MAX) break;
  }
  return out;
}

/**
 * Ad copy without a model (method 'template'): the English headline, the
 * Korean ad copy and the Instagram caption, from the job's inputs and tone;
 * the length limits every copy (templates and models alike) keeps.
 */

export const HEADLINE_MAX_CHARS = 40;
export const CAPTION_MAX_CHARS = 2200;
export const HASHTAGS_MAX = 30;

export type ToneKey = 'friendly' | 'premium' | 'playful' | 'minimal' | 'energetic' | 'calm';

export interface TemplateInputs {
  descKor: string;
  productName?: string | null | undefined;
  tone?: string | null | undefined;
  toneDescription?: string | null | undefined;
}

/** Common Korean product words and their English ad words (longest match first). */
export const KEYWORDS: Array<[string, string]> = [
  ['드립커피', 'drip coffee'],
  ['콜드브루', 'cold brew'],
  ['에스프레소', 'espresso'],
  ['아메리카노', 'americano'],
  ['라떼', 'latte'],
  ['원두', 'coffee beans'],
  ['커피', 'coffee'],
  ['녹차', 'green tea'],
  ['홍차', 'black tea'],
  ['차', 'tea'],
  ['케이크', 'cake'],
  ['쿠키', 'cookies'],
  ['초콜릿', 'chocolate'],
  ['빵', 'bread'],
  ['베이커리', 'bakery'],
  ['와인', 'wine'],
  ['맥주', 'beer'],
  ['주스', 'juice'],
  ['샐러드', 'salad'],
  ['도시락', 'lunch box'],
  ['화장품', 'skincare'],
  ['스킨케어', 'skincare'],
  ['세럼', 'serum'],
  ['크림', 'cream'],
  ['선크림', 'sunscreen'],
  ['립스틱', 'lipstick'],
  ['향수', 'fragrance'],
  ['샴푸', 'shampoo'],
  ['캔들', 'candle'],
  ['향초', 'candle'],
  ['운동화', 'sneakers'],
  ['신발', 'shoes'],
  ['가방', 'bag'],
  ['지갑', 'wallet'],
  ['시계', 'watch'],
  ['안경', 'glasses'],
  ['모자', 'cap'],
  ['티셔츠', 't-shirt'],
  ['원피스', 'dress'],
  ['자켓', 'jacket'],
  ['재킷', 'jacket'],
  ['니트', 'knit'],
  ['이어폰', 'earbuds'],
  ['헤드폰', 'headphones'],
  ['스피커', 'speaker'],
  ['노트북', 'laptop'],
  ['키보드', 'keyboard'],
  ['스마트폰', 'smartphone'],
  ['카메라', 'camera'],
  ['머그', 'mug'],
  ['컵', 'cup'],
  ['텀블러', 'tumbler'],
  ['접시', 'plate'],
  ['의자', 'chair'],
  ['조명', 'lamp'],
  ['쿠션', 'cushion'],
  ['고양이', 'cat'],
  ['강아지', 'dog'],
  ['사료', 'pet food'],
  ['간식', 'treats'],
  ['장난감', 'toy'],
  ['꽃', 'flowers'],
  ['화분', 'plant'],
  ['책', 'book'],
  ['여행', 'travel'],
  ['로켓', 'rocket'],
];

/** Korean quality words and their English ad words. */
export const QUALITIES: Array<[string, string]> = [
  ['수제', 'handmade'],
  ['핸드메이드', 'handmade'],
  ['유기농', 'organic'],
  ['천연', 'natural'],
  ['신선', 'fresh'],
  ['프리미엄', 'premium'],
  ['고급', 'premium'],
  ['친환경', 'eco-friendly'],
  ['가벼운', 'lightweight'],
  ['부드러운', 'smooth'],
  ['진한', 'rich'],
  ['달콤', 'sweet'],
  ['고소', 'nutty'],
  ['따뜻', 'warm'],
  ['시원', 'refreshing'],
  ['편안', 'comfortable'],
  ['한정', 'limited'],
  ['신상', 'new'],
  ['새로운', 'new'],
];

/** Maps a tone code or description (English or Korean) to a template family. */
export function toneKey(tone?: string | null, description?: string | null): ToneKey {
  const s = `${tone ?? ''} ${description ?? ''}`.toLowerCase();
  if (/premium|luxury|elegant|sophisticated|고급|프리미엄|럭셔리|우아/.test(s)) return 'premium';
  if (/playful|fun|witty|humor|유쾌|재미|발랄|귀여/.test(s)) return 'playful';
  if (/minimal|simple|clean|미니멀|심플|깔끔/.test(s)) return 'minimal';
  if (/energetic|bold|dynamic|sport|활기|역동|강렬|에너지/.test(s)) return 'energetic';
  if (/calm|cozy|warm|relax|차분|따뜻|편안|감성|아늑/.test(s)) return 'calm';
  return 'friendly';
}

const ANIMALS: Record<string, string> = { 고양이: 'cat', 강아지: 'dog', 반려견: 'dog', 반려묘: 'cat' };

/**
 * The English product words of a Korean description. Korean noun phrases are
 * head-final ("고양이를 위한 유기농 간식" is about the treats), so the product
 * is the keyword mentioned last in the first sentence (the longest one at that
 * place), prefixed by the animal it is for when one is named ("cat treats").
 */
export function productWords(descKor: string): {
  product: string | null;
  productKo: string | null;
  quality: string | null;
} {
  const text = (descKor ?? '').normalize('NFC');
  const first = text.split(/(?<=[.!?。])\s+|\n+/u)[0] ?? text;
  let product: string | null = null;
  let productKo: string | null = null;
  let bestEnd = -1;
  let bestLen = 0;
  for (const [ko, en] of KEYWORDS) {
    const at = first.lastIndexOf(ko);
    if (at < 0) continue;
    const end = at + ko.length;
    if (end > bestEnd || (end === bestEnd && ko.length > bestLen)) {
      bestEnd = end;
      bestLen = ko.length;
      product = en;
      productKo = ko;
    }
  }
  if (product && product !== 'cat' && product !== 'dog') {
    const animal = Object.entries(ANIMALS).find(([ko]) => first.includes(ko))?.[1];
    if (animal) product = `${animal} ${product}`;
  }
  const quality = QUALITIES.find(([ko]) => text.includes(ko))?.[1] ?? null;
  return { product, productKo, quality };
}

function fit(candidates: string[], max: number): string {
  const ok = candidates.map((c) => c.replace(/\s+/g, ' ').trim()).find((c) => c.length > 0 && c.length <= max);
  if (ok) return ok;
  const first = candidates[0] ?? 'Made for you';
  return first.length <= max ? first : `${first.slice(0, max - 1).trimEnd()}…`;
}

/** English headline from the inputs, without a model: short, ad-like, at most 40 characters. */
export function templateHeadline(inputs: TemplateInputs): string {
  const { product, quality } = productWords(inputs.descKor ?? '');
  const name = inputs.productName?.trim() || null;
  const thing = product ?? 'everyday';
  const tone = toneKey(inputs.tone, inputs.toneDescription);
  const q = quality ? `${quality} ` : '';
  // Templates read well with a bare noun (no article needed: "coffee", "bag", "cat treats").
  const byTone: Record<ToneKey, string[]> = {
    friendly: [name ? `Say hello to ${name}` : `Your new favourite ${q}${thing}`, `Your new favourite ${thing}`],
    premium: [
      name ? `${name}. Quietly exceptional.` : `Quietly exceptional ${q}${thing}`,
      `Quietly exceptional ${thing}`,
      'Quietly exceptional',
    ],
    playful: [`Psst… new ${thing} just dropped`, `Psst… new ${thing}`, 'Go on, treat yourself'],
    minimal: [
      name ? `${name}. Simply better.` : `Simply better ${q}${thing}`,
      `Simply better ${thing}`,
      'Simply good.',
    ],
    energetic: [`Ready, set, ${thing}!`, 'Ready when you are'],
    calm: [`Slow moments, better ${thing}`, `Slow moments, ${thing}`, 'Take a slow moment'],
  };
  if (!product && !name) {
    const generic: Record<ToneKey, string> = {
      friendly: 'Made for your everyday',
      premium: 'Quietly exceptional',
      playful: 'Go on, treat yourself',
      minimal: 'Simply good.',
      energetic: 'Ready when you are',
      calm: 'Take a slow moment',
    };
    return generic[tone];
  }
  return fit(byTone[tone], HEADLINE_MAX_CHARS);
}

/** The first sentence or clause of the Korean description, trimmed for reuse in copy. */
function koreanGist(descKor: string, max = 40): string {
  const first =
    (descKor ?? '')
      .normalize('NFC')
      .trim()
      .split(/(?<=[.!?。])\s+|\n+/u)[0] ?? '';
  const clean = first.replace(/[.!?。]+$/u, '').trim();
  if ([...clean].length <= max) return clean;
  return `${[...clean]
    .slice(0, max - 1)
    .join('')
    .trimEnd()}…`;
}

/** Korean ad copy without a model: tone-specific templates built from desc_kor. */
export function templateKoreanCopy(inputs: {
  headlineEng?: string;
  headline?: string;
  descKor: string;
  tone?: string | null | undefined;
  toneDescription?: string | null | undefined;
  productName?: string | null | undefined;
}): string {
  const gist = koreanGist(inputs.descKor);
  const name = inputs.productName?.trim();
  const tone = toneKey(inputs.tone, inputs.toneDescription);
  // A description that is a full sentence ("...원두입니다") stands on its own;
  // a noun phrase ("가볍고 튼튼한 데일리 가방") leads into the tone's line.
  const sentence = /(다|요|죠|까|네)$/u.test(gist);
  const lead = name && !gist.includes(name) ? `${name}, ${gist || '오늘의 선택'}` : gist || name || '오늘의 선택';
  const after: Record<ToneKey, string> = {
    friendly: '매일이 조금 더 즐거워져요. 지금 만나보세요!',
    premium: '한 끗 다른 품격을 경험하세요.',
    playful: '한 번 만나면 계속 찾게 될걸요?',
    minimal: '필요한 것만, 가장 좋게.',
    energetic: '지금 바로 시작하세요!',
    calm: '천천히 여유롭게 즐겨보세요.',
  };
  const joiner = sentence ? '. ' : tone === 'friendly' || tone === 'playful' || tone === 'calm' ? ', ' : '. ';
  return `${lead}${joiner}${after[tone]}`;
}

/** Instagram caption without a model (at most 2,200 characters). */
export function templateCaption(inputs: {
  headlineEng?: string;
  headline?: string;
  koreanCopy?: string;
  adCopyKor?: string;
  descKor: string;
  tone?: string | null | undefined;
  toneDescription?: string | null | undefined;
  productName?: string | null | undefined;
}): string {
  const headline = (inputs.headlineEng ?? inputs.headline ?? '').trim();
  const korean = (inputs.koreanCopy ?? inputs.adCopyKor ?? '').trim();
  const desc = (inputs.descKor ?? '').normalize('NFC').trim();
  const tone = toneKey(inputs.tone, inputs.toneDescription);
  const closing: Record<ToneKey, string> = {
    friendly: '지금 프로필 링크에서 만나보세요 💛',
    premium: '프로필 링크에서 자세히 살펴보세요.',
    playful: '궁금하다면? 프로필 링크 클릭! 😆',
    minimal: '프로필 링크',
    energetic: '지금 바로, 프로필 링크에서! 🔥',
    calm: '여유로운 하루, 프로필 링크에서 시작해 보세요 ☕',
  };
  const parts = [korean, headline ? `“${headline}”` : '', desc, closing[tone]].filter((p) => p.length > 0);
  const unique = parts.filter((p, i) => parts.indexOf(p) === i);
  const caption = unique.join('\n\n');
  const chars = [...caption];
  return chars.length <= CAPTION_MAX_CHARS ? caption : `${chars.slice(0, CAPTION_MAX_CHARS - 1).join('')}…`;
}

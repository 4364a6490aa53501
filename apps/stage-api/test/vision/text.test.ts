import t from 'tap';
import {
  AD_COPY_SCHEMA,
  buildAdCopyPrompt,
  buildCaptionPrompt,
  buildVlmAnalyzePrompt,
  buildVlmJudgePrompt,
  CAPTION_SCHEMA,
  templateCaption,
  templateHashtags,
  templateHeadline,
  templateKoreanCopy,
  toneKey,
  VLM_ANALYZE_SCHEMA,
  VLM_JUDGE_SCHEMA,
} from '../../src/text/index.js';

const DESC = '산미가 적고 고소한 맛의 수제 드립커피 원두입니다. 매일 아침 신선하게 로스팅합니다.';

t.test('template headline: English, short, from the product words and tone', async (t) => {
  for (const tone of ['friendly', 'premium', 'playful', 'minimal', 'energetic', 'calm', '감성', null]) {
    const h = templateHeadline({ descKor: DESC, tone });
    t.ok(h.length > 0 && h.length <= 40, `${tone}: "${h}"`);
    t.notMatch(h, /[\uac00-\ud7af]/, 'no Hangul');
  }
  t.match(templateHeadline({ descKor: DESC, tone: 'calm' }), /coffee/i);
  t.equal(templateHeadline({ descKor: '', tone: 'minimal' }), 'Simply good.');
  t.equal(
    templateHeadline({ descKor: '우리 집 고양이를 위한 유기농 간식', tone: 'calm' }),
    'Slow moments, better cat treats',
  );
  t.equal(
    templateHeadline({ descKor: DESC, tone: 'friendly', productName: 'Morning Roast' }),
    'Say hello to Morning Roast',
  );
  t.equal(toneKey('고급스러운'), 'premium');
  t.equal(toneKey(null, 'cozy and warm'), 'calm');
});

t.test('template Korean copy follows the tone and uses desc_kor', async (t) => {
  const calm = templateKoreanCopy({ headlineEng: 'Slow mornings', descKor: DESC, tone: 'calm' });
  const playful = templateKoreanCopy({ headline: 'Slow mornings', descKor: DESC, tone: 'playful' });
  t.not(calm, playful);
  t.equal(
    calm,
    '산미가 적고 고소한 맛의 수제 드립커피 원두입니다. 천천히 여유롭게 즐겨보세요.',
    'a sentence stands on its own',
  );
  t.equal(
    templateKoreanCopy({ descKor: '가볍고 튼튼한 데일리 가방', tone: 'friendly' }),
    '가볍고 튼튼한 데일리 가방, 매일이 조금 더 즐거워져요. 지금 만나보세요!',
    'a noun phrase leads into the line',
  );
  t.match(calm, /[\uac00-\ud7af]/);
});

t.test('caption <= 2200 characters, hashtags <= 30, unique and valid', async (t) => {
  const caption = templateCaption({
    headlineEng: 'Slow mornings, better coffee',
    koreanCopy: '오늘의 한 잔',
    descKor: DESC,
    tone: 'calm',
  });
  t.ok([...caption].length <= 2200);
  t.match(caption, /Slow mornings, better coffee/);
  t.match(caption, /오늘의 한 잔/);
  const long = templateCaption({
    headlineEng: 'x',
    koreanCopy: '가'.repeat(3000),
    descKor: DESC.repeat(40),
    tone: 'calm',
  });
  t.equal([...long].length, 2200, 'clamped');

  const tags = templateHashtags({
    descKor: DESC.repeat(20) + ' 커피 케이크 쿠키 빵 와인 맥주 주스 샐러드 향수 가방 시계 노트북',
    tone: 'calm',
  });
  t.ok(tags.length > 5 && tags.length <= 30, `${tags.length} tags`);
  t.equal(new Set(tags.map((x) => x.toLowerCase())).size, tags.length, 'unique');
  for (const tag of tags) t.match(tag, /^#[\p{L}\p{N}_]{2,50}$/u, tag);
  t.ok(
    tags.some((x) => /[\uac00-\ud7af]/.test(x)),
    'Korean tags',
  );
  t.ok(
    tags.some((x) => /^#[a-z]/i.test(x)),
    'English tags',
  );
  t.ok(tags.includes('#coffee') && tags.includes('#커피'));
});

t.test('prompts and their JSON schemas', async (t) => {
  const p = buildAdCopyPrompt({ descKor: DESC, tone: 'calm' });
  t.match(p.user, /at most 40 characters/);
  t.match(p.user, new RegExp(DESC.slice(0, 10)));
  t.match(buildCaptionPrompt({ headlineEng: 'H', koreanCopy: 'K', descKor: DESC }).user, /2200 characters/);
  t.match(buildVlmAnalyzePrompt().user, /usable/);
  t.match(buildVlmJudgePrompt({ headline: 'H', tagline: '한 잔' }).user, /tagline "한 잔"/);
  for (const s of [AD_COPY_SCHEMA, CAPTION_SCHEMA, VLM_ANALYZE_SCHEMA, VLM_JUDGE_SCHEMA]) {
    t.equal(s.type, 'object');
    t.equal(s.additionalProperties, false);
    t.same([...s.required].sort(), Object.keys(s.properties).sort(), 'strict: every property required');
  }
});

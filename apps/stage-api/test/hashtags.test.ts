// Template hashtags (no LLM configured): nouns of the description, never verb
// or adjective forms, within Instagram's limits.
import t from 'tap';
import { descriptionNouns, templateHashtags } from '../src/text/index.js';

const COFFEE =
  '산지에서 직접 고른 원두로 내린 핸드드립 커피. 부드러운 산미와 고소한 견과류 향이 어우러져 아침을 깨워 줍니다. 여유로운 하루, 프로필 링크에서 시작해 보세요';

t.test('description nouns: words that carry a noun particle, not verb forms or calls to action', async (t) => {
  const nouns = descriptionNouns(COFFEE);
  t.same(nouns, ['산지', '원두', '산미', '아침']);
  for (const verbish of ['고른', '내린', '깨워', '어우러져', '직접', '링크']) {
    t.notOk(nouns.includes(verbish), `${verbish} is not a tag`);
  }
  t.same(descriptionNouns('맛있는 빵을 만들어 드려요. 함께로 가요'), [], 'one-syllable nouns and adverbs are dropped');
  t.same(descriptionNouns('천연 성분의 수분 크림이 건조한 피부에 촉촉함을 채워 줍니다.'), ['성분', '크림', '피부']);
});

t.test('template hashtags: product, dictionary keywords and nouns, each once, #-prefixed, at most 30', async (t) => {
  const tags = templateHashtags({ descKor: COFFEE, productName: 'Hand-drip coffee', tone: 'calm' });
  t.ok(tags.length > 5 && tags.length <= 30, `${tags.length} tags`);
  t.ok(
    tags.every((h) => /^#[^\s#]{2,50}$/u.test(h)),
    'one word each, with #',
  );
  t.equal(new Set(tags.map((h) => h.toLowerCase())).size, tags.length, 'no repeats');
  for (const want of ['#원두', '#커피', '#coffee', '#아침']) t.ok(tags.includes(want), `has ${want}`);
  for (const bad of ['#고른', '#내린', '#깨워', '#어우러져', '#직접', '#링크'])
    t.notOk(tags.includes(bad), `no ${bad}`);
});

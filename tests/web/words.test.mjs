// The question in words, in each language, outside a browser: the
// sentences the researchers' app and the stewards' queue show.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import * as i18n from '../../service/web/i18n.js';
import * as words from '../../service/web/words.js';

const catalogue = (lang) => JSON.parse(readFileSync(new URL(`../../service/web/i18n/${lang}.json`, import.meta.url), 'utf8'));

const flagship = {
  measures: [{ kind: 'donors' }, { kind: 'samples' }],
  filter: {
    and: [
      { in: { column: 'sex', values: ['Female'] } },
      { range: { column: 'age_at_sampling', min: 50, max: 70 } },
      { not: { in: { column: 'sample_type', values: ['Serum'] } } },
    ],
  },
  group_by: ['sample_type'],
};

test('the question reads as a sentence in English, German and Danish', () => {
  const said = {};
  for (const lang of ['en', 'de', 'da']) {
    i18n.set(lang, catalogue(lang));
    said[lang] = words.question(flagship);
  }
  assert.equal(
    said.en,
    'Count donors and samples among samples where sex is female and age at sampling from 50 to 70 and sample type is not serum, broken down by sample type.',
  );
  // German puts the verb second after "für die gilt:", never "bei denen
  // Geschlecht ist weiblich".
  assert.equal(
    said.de,
    'Zähle Spender und Proben unter den Proben, für die gilt: Geschlecht ist weiblich und Alter bei Entnahme liegt zwischen 50 und 70 und Probenart ist nicht Serum; aufgeschlüsselt nach Probenart.',
  );
  assert.equal(
    said.da,
    'Tæl donorer og prøver blandt prøver, hvor køn er kvinde og alder ved prøvetagning fra 50 til 70 og prøvetype er ikke serum, opdelt efter prøvetype.',
  );
});

test('dates and numbers follow the chosen language', () => {
  const at = '2026-12-07T14:02:00Z';
  i18n.set('en', catalogue('en'));
  assert.match(i18n.day('2026-12-07'), /^7 December 2026$/);
  assert.equal(i18n.num(12345.678, 1), '12,345.7');
  i18n.set('de', catalogue('de'));
  assert.equal(i18n.day('2026-12-07'), '7. Dezember 2026');
  assert.equal(i18n.num(12345.678, 1), '12.345,7');
  i18n.set('da', catalogue('da'));
  assert.equal(i18n.day('2026-12-07'), '7. december 2026');
  assert.equal(i18n.num(12345.678, 1), '12.345,7');
  // Day before month in every language: never the US order.
  for (const lang of ['en', 'de', 'da']) {
    i18n.set(lang, catalogue(lang));
    assert.doesNotMatch(i18n.when(at), /^Dec|^12\//, lang);
  }
});

test('OR groups keep their brackets in every language', () => {
  const q = {
    measures: [{ kind: 'donors' }],
    filter: { or: [{ and: [{ in: { column: 'sex', values: ['Female'] } }, { prefix: { column: 'diagnosis', prefix: 'S72' } }] }, { in: { column: 'sample_type', values: ['Serum', 'Plasma'] } }] },
    group_by: [],
  };
  i18n.set('de', catalogue('de'));
  assert.equal(
    words.question(q),
    'Zähle Spender unter den Proben, für die gilt: (Geschlecht ist weiblich und Diagnose beginnt mit S72) oder Probenart ist Serum oder Plasma.',
  );
});

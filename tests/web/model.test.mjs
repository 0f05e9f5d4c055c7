// The researchers' app's model, outside a browser: criteria (chips) to the
// FeasibilityQuery and back, OR and exclusion groups, the question in the
// address, and which breakdown cells a question's own filter rules out.
// Run with Node's own test runner: `node --test tests/web/`.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as model from '../../coordinator/web/model.js';

const serum = { column: 'sample_type', kind: 'in', values: ['Serum'] };
const women = { column: 'sex', kind: 'in', values: ['Female'] };
const older = { column: 'age_at_sampling', kind: 'range', min: 50, max: 70 };
const fracture = { column: 'diagnosis', kind: 'codes', entries: [{ code: 'S72', prefix: true }, { code: 'M80.0', prefix: false }] };

test('an empty question counts every sample', () => {
  const q = model.toQuery(model.empty());
  assert.equal(q.filter, 'true');
  assert.deepEqual(q.measures, [{ kind: 'donors' }, { kind: 'samples' }]);
  assert.deepEqual(q.group_by, []);
});

test('criteria in a group are ANDed, groups are ORed, exclusions are NOT any of them', () => {
  const state = { ...model.empty(), include: [[women, older], [serum]], exclude: [[fracture]] };
  assert.deepEqual(model.toFilter(state), {
    and: [
      {
        or: [
          { and: [{ in: { column: 'sex', values: ['Female'] } }, { range: { column: 'age_at_sampling', min: 50, max: 70 } }] },
          { in: { column: 'sample_type', values: ['Serum'] } },
        ],
      },
      { not: { or: [{ in: { column: 'diagnosis', values: ['M80.0'] } }, { prefix: { column: 'diagnosis', prefix: 'S72' } }] } },
    ],
  });
});

test('an exclusion alone is NOT of it, over every sample', () => {
  const state = { ...model.empty(), exclude: [[serum], [women]] };
  assert.deepEqual(model.toFilter(state), {
    not: { or: [{ in: { column: 'sample_type', values: ['Serum'] } }, { in: { column: 'sex', values: ['Female'] } }] },
  });
});

test('a question goes to a query and back to the same chips and groups', () => {
  const cases = [
    { include: [[]], exclude: [] },
    { include: [[women]], exclude: [] },
    { include: [[women, older]], exclude: [] },
    { include: [[women, older], [serum]], exclude: [] },
    { include: [[women]], exclude: [[serum]] },
    { include: [[]], exclude: [[serum], [older]] },
    { include: [[{ ...fracture, entries: [{ code: 'S72', prefix: true }] }]], exclude: [] },
  ];
  for (const shape of cases) {
    const state = { ...model.empty(), ...shape, by: ['sample_type'], measures: ['donors'] };
    const back = model.fromQuery(model.toQuery(state), null);
    assert.deepEqual(back.include, shape.include, JSON.stringify(shape));
    assert.deepEqual(back.exclude, shape.exclude, JSON.stringify(shape));
    assert.deepEqual(back.by, ['sample_type']);
    assert.deepEqual(back.measures, ['donors']);
  }
});

test('codes and prefixes on the diagnosis come back as one criterion', () => {
  const state = { ...model.empty(), include: [[fracture]] };
  const back = model.fromQuery(model.toQuery(state));
  assert.equal(back.include[0].length, 1);
  assert.deepEqual(
    back.include[0][0].entries.map((e) => `${e.code}${e.prefix ? '*' : ''}`).sort(),
    ['M80.0', 'S72*'],
  );
});

test('a question the builder cannot show is left to SQL', () => {
  // NOT inside an OR group, and a measure the builder has no box for.
  const nested = { measures: [{ kind: 'donors' }], group_by: [], filter: { or: [{ not: { in: { column: 'sex', values: ['Male'] } } }, { in: { column: 'sample_type', values: ['Serum'] } }] } };
  assert.equal(model.fromQuery(nested), null);
  const sum = { measures: [{ kind: 'sum', column: 'aliquots_available' }], group_by: [], filter: 'true' };
  assert.equal(model.fromQuery(sum), null);
});

test('the question in the address reads back, whatever its letters', () => {
  const state = { ...model.empty(), include: [[{ column: 'site_id', kind: 'in', values: ['DK-NAE'] }, women]], sites: ['DK-NAE'], sql: 'SELECT COUNT(*) FROM samples -- Næstved, Lübeck' };
  const text = model.encode(state);
  assert.match(text, /^[A-Za-z0-9_-]+$/, 'safe in a URL hash without escaping');
  assert.deepEqual(model.decode(text), state);
  assert.equal(model.decode('not base64 at all!'), null);
  assert.equal(model.decode(''), null);
});

test('a breakdown cell the filter excludes is ruled out, and only then', () => {
  const f = (state) => model.toFilter({ ...model.empty(), ...state });
  const serumOnly = f({ include: [[serum]] });
  assert.equal(model.ruledOut(serumOnly, ['sample_type'], ['Serum']), false);
  assert.equal(model.ruledOut(serumOnly, ['sample_type'], ['Mesenchymal stem cells']), true);
  // A condition on another column rules nothing out of this one.
  assert.equal(model.ruledOut(serumOnly, ['sex'], ['Male']), false);
  // Two dimensions: one key out is enough.
  assert.equal(model.ruledOut(serumOnly, ['sex', 'sample_type'], ['Male', 'Bone marrow']), true);
  // OR across columns: a stem-cell sample of a woman still counts.
  const either = f({ include: [[serum], [women]] });
  assert.equal(model.ruledOut(either, ['sample_type'], ['Mesenchymal stem cells']), false);
  // OR on the same column: both values stay.
  const both = f({ include: [[serum], [{ column: 'sample_type', kind: 'in', values: ['Plasma'] }]] });
  assert.equal(model.ruledOut(both, ['sample_type'], ['Plasma']), false);
  assert.equal(model.ruledOut(both, ['sample_type'], ['DNA']), true);
  // An exclusion of values rules exactly them out.
  const notSerum = f({ exclude: [[serum]] });
  assert.equal(model.ruledOut(notSerum, ['sample_type'], ['Serum']), true);
  assert.equal(model.ruledOut(notSerum, ['sample_type'], ['Plasma']), false);
  // An exclusion of a conjunction says nothing certain about one column.
  const notOldSerum = f({ exclude: [[serum, older]] });
  assert.equal(model.ruledOut(notOldSerum, ['sample_type'], ['Serum']), false);
});

test('bands and categories derived from a filtered column follow its range and codes', () => {
  const f = (state) => model.toFilter({ ...model.empty(), ...state });
  const aged = f({ include: [[older]] });
  const out = (band) => model.ruledOut(aged, ['age_band'], [band]);
  assert.deepEqual(['40-49', '50-59', '60-69', '70-79', '80-89', '90+'].map(out), [true, false, false, false, true, true]);
  const from90 = f({ include: [[{ column: 'age_at_sampling', kind: 'range', min: 95, max: null }]] });
  assert.equal(model.ruledOut(from90, ['age_band'], ['90+']), false);
  assert.equal(model.ruledOut(from90, ['age_band'], ['80-89']), true);
  // Five-year bands the same way.
  const five = (band) => model.ruledOut(aged, ['age_band_5'], [band]);
  assert.deepEqual(['45-49', '50-54', '65-69', '70-74', '85-89', '90+'].map(five), [true, false, false, false, true, true]);
  const dx = f({ include: [[fracture]] });
  assert.equal(model.ruledOut(dx, ['diagnosis_3char'], ['S72']), false);
  assert.equal(model.ruledOut(dx, ['diagnosis_3char'], ['M80']), false);
  assert.equal(model.ruledOut(dx, ['diagnosis_3char'], ['M81']), true);
  assert.equal(model.ruledOut(dx, ['diagnosis_3char'], ['C90']), true);
  const chapter = f({ include: [[{ column: 'diagnosis', kind: 'codes', entries: [{ code: 'S', prefix: true }] }]] });
  assert.equal(model.ruledOut(chapter, ['diagnosis_3char'], ['S42']), false);
  assert.equal(model.ruledOut(chapter, ['diagnosis_3char'], ['M80']), true);
  // The chapter dimension is not read: nothing is ruled out of it.
  assert.equal(model.ruledOut(dx, ['diagnosis_chapter'], ['II']), false);
  // The sampling year is a column and a dimension at once.
  const recent = f({ include: [[{ column: 'sampling_year', kind: 'range', min: 2020, max: 2022 }]] });
  assert.equal(model.ruledOut(recent, ['sampling_year'], [2019]), true);
  assert.equal(model.ruledOut(recent, ['sampling_year'], [2021]), false);
});

test('exports leave out the numbers of cells the question rules out, and say so', () => {
  const filter = model.toFilter({ ...model.empty(), include: [[serum]] });
  const value = (v) => ({ value: v, unclamped: v, interval: [v - 5, v + 5] });
  const rows = [
    { key: ['Serum'], values: [value(120)] },
    { key: ['RNA'], values: [value(31)] },
  ];
  const answer = {
    query: { filter },
    dimensions: ['sample_type'],
    measures: ['samples'],
    sites: [{ site_id: 'DE-LUE', status: 'answered', result: { rows } }],
    total: rows,
  };
  const lines = model.toCsv(answer).trim().split('\n');
  assert.deepEqual(lines, [
    'site,status,sample_type,samples,samples_low,samples_high,ruled_out_by_question',
    'DE-LUE,answered,Serum,120,115,125,',
    'DE-LUE,answered,RNA,,,,yes',
    'total,,Serum,120,115,125,',
    'total,,RNA,,,,yes',
  ]);
  const json = model.withRuledOut(answer);
  assert.equal(json.total[1].ruled_out, true);
  assert.equal(json.sites[0].result.rows[1].ruled_out, true);
  assert.equal(json.total[0].ruled_out, undefined);
  // The numbers stay in the JSON, as the coordinator sent them.
  assert.equal(json.total[1].values[0].value, 31);
  // Without a breakdown nothing is ruled out.
  const plain = { ...answer, dimensions: [], total: [{ key: [], values: [value(9)] }], sites: [] };
  assert.equal(model.toCsv(plain).trim().split('\n')[1], 'total,,9,4,14,');
});

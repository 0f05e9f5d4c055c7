// A question in plain words, in the page's language: the researcher's app
// explains what it will ask, and a steward's queue says what is asked.
// Works on the FeasibilityQuery JSON every service speaks.

import { t } from './i18n.js';

/** A column's name in words. */
export function column(name) {
  const key = `col.${name}`;
  const text = t(key);
  return text === key ? name : text;
}

/** A value of a column in words (codes such as sample types have names). */
export function value(col, v) {
  if (typeof v === 'boolean') return v ? t('words.yes') : t('words.no');
  const key = `val.${col}.${v}`;
  const text = t(key);
  return text === key ? String(v) : text;
}

function list(items, joiner) {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} ${joiner} ${items[items.length - 1]}`;
}

/** A filter in words; `nested` puts brackets around lists of conditions. */
export function filter(f, nested = false) {
  if (f === 'true' || f === true || f == null) return t('words.all_samples');
  const [kind, body] = Object.entries(f)[0];
  const wrap = (text) => (nested ? `(${text})` : text);
  switch (kind) {
    case 'and':
      return wrap(body.map((c) => filter(c, true)).join(` ${t('words.and')} `));
    case 'or':
      return wrap(body.map((c) => filter(c, true)).join(` ${t('words.or')} `));
    case 'not': {
      // "sample type is not serum" rather than "not sample type is serum".
      const inner = Object.entries(body)[0];
      if (inner[0] === 'in' && typeof inner[1].values[0] !== 'boolean') {
        return t('words.is_not', {
          column: column(inner[1].column),
          values: list(inner[1].values.map((v) => value(inner[1].column, v)), t('words.or')),
        });
      }
      return t('words.not', { what: filter(body, true) });
    }
    case 'in':
      if (body.values.length === 1 && typeof body.values[0] === 'boolean') {
        return t(body.values[0] ? 'words.flag_yes' : 'words.flag_no', { column: column(body.column) });
      }
      return t('words.is', {
        column: column(body.column),
        values: list(body.values.map((v) => value(body.column, v)), t('words.or')),
      });
    case 'range':
      if (body.min != null && body.max != null) {
        return t('words.between', { column: column(body.column), min: body.min, max: body.max });
      }
      if (body.min != null) return t('words.at_least', { column: column(body.column), min: body.min });
      if (body.max != null) return t('words.at_most', { column: column(body.column), max: body.max });
      return t('words.recorded', { column: column(body.column) });
    case 'prefix':
      return t('words.starts_with', { column: column(body.column), prefix: body.prefix });
    case 'is_null':
      return t('words.none_recorded', { column: column(body.column) });
    default:
      return JSON.stringify(f);
  }
}

/** A measure in words. */
export function measure(m) {
  switch (m.kind) {
    case 'donors':
      return t('measure.donors');
    case 'samples':
      return t('measure.samples');
    case 'sum':
      return t('measure.sum', { column: column(m.column) });
    case 'avg':
      return t('measure.avg', { column: column(m.column) });
    default:
      return m.kind;
  }
}

/** A whole question in one sentence. */
export function question(q) {
  const what = list(q.measures.map(measure), t('words.and'));
  const by = list((q.group_by || []).map(column), t('words.and'));
  const all = q.filter === 'true' || q.filter == null;
  const key = `words.question${all ? '_all' : ''}${by ? '_by' : ''}`;
  return t(key, { what, where: all ? '' : filter(q.filter), by });
}

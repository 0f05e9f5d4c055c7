// The researcher's question as the builder holds it, and its translation to
// and from the FeasibilityQuery every service speaks.
//
// A question is groups of criteria: AND within a group, OR between groups,
// and exclusion groups (NOT any of them). A criterion is one column: a set
// of values, a range, or (for diagnoses) codes and code prefixes, any of
// which matches.

/** An empty question: donors and samples of every sample. */
export function empty() {
  return { include: [[]], exclude: [], by: [], measures: ['donors', 'samples'], sites: null };
}

function leaf(c) {
  switch (c.kind) {
    case 'in':
      return { in: { column: c.column, values: c.values } };
    case 'range':
      return { range: { column: c.column, min: c.min ?? null, max: c.max ?? null } };
    case 'null':
      return { is_null: { column: c.column } };
    case 'codes': {
      const parts = [];
      const codes = c.entries.filter((e) => !e.prefix).map((e) => e.code);
      if (codes.length) parts.push({ in: { column: c.column, values: codes } });
      for (const e of c.entries.filter((e) => e.prefix)) {
        parts.push({ prefix: { column: c.column, prefix: e.code } });
      }
      return parts.length === 1 ? parts[0] : { or: parts };
    }
    default:
      throw new Error(`unknown criterion ${c.kind}`);
  }
}

function group(criteria) {
  const parts = criteria.map(leaf);
  return parts.length === 1 ? parts[0] : { and: parts };
}

function anyOf(groups) {
  const parts = groups.filter((g) => g.length).map(group);
  if (!parts.length) return null;
  return parts.length === 1 ? parts[0] : { or: parts };
}

/** The filter of a question. */
export function toFilter(m) {
  const include = anyOf(m.include);
  const exclude = anyOf(m.exclude);
  if (!exclude) return include || 'true';
  const not = { not: exclude };
  return include ? { and: [include, not] } : not;
}

/** The FeasibilityQuery of a question. */
export function toQuery(m) {
  return {
    measures: m.measures.map((kind) => ({ kind })),
    filter: toFilter(m),
    group_by: [...m.by],
  };
}

const kindOf = (f) => (typeof f === 'string' ? f : Object.keys(f)[0]);

/** A leaf (or an OR of leaves on one column) as a criterion, or null. */
function criterion(f) {
  const kind = kindOf(f);
  if (kind === 'in') {
    const { column, values } = f.in;
    if (column === 'diagnosis') return { column, kind: 'codes', entries: values.map((code) => ({ code, prefix: false })) };
    return { column, kind: 'in', values: [...values] };
  }
  if (kind === 'range') return { column: f.range.column, kind: 'range', min: f.range.min ?? null, max: f.range.max ?? null };
  if (kind === 'prefix') return { column: f.prefix.column, kind: 'codes', entries: [{ code: f.prefix.prefix, prefix: true }] };
  if (kind === 'is_null') return { column: f.is_null.column, kind: 'null' };
  if (kind === 'or') {
    const parts = f.or.map(criterion);
    if (parts.some((p) => !p) || new Set(parts.map((p) => p.column)).size !== 1) return null;
    if (parts.every((p) => p.kind === 'codes' || (p.kind === 'in' && p.column === 'diagnosis'))) {
      return { column: parts[0].column, kind: 'codes', entries: parts.flatMap((p) => p.entries) };
    }
    if (parts.every((p) => p.kind === 'in')) {
      return { column: parts[0].column, kind: 'in', values: parts.flatMap((p) => p.values) };
    }
  }
  return null;
}

/** A conjunction of criteria as a group, or null. */
function asGroup(f) {
  const parts = kindOf(f) === 'and' ? f.and : [f];
  const criteria = parts.map(criterion);
  return criteria.every(Boolean) ? criteria : null;
}

/** An OR of groups (or one group), or null. */
function asGroups(f) {
  const single = criterion(f);
  if (single) return [[single]];
  if (kindOf(f) === 'or') {
    const groups = f.or.map(asGroup);
    return groups.every(Boolean) ? groups : null;
  }
  const g = asGroup(f);
  return g ? [g] : null;
}

/**
 * The question a filter means, where it fits the builder's shape; null
 * where it does not (it is then asked as SQL).
 */
export function fromFilter(f) {
  if (f === 'true' || f == null) return { include: [[]], exclude: [] };
  const conjuncts = kindOf(f) === 'and' ? f.and : [f];
  const exclude = [];
  const rest = [];
  for (const c of conjuncts) {
    if (kindOf(c) === 'not') {
      const groups = asGroups(c.not);
      if (!groups) return null;
      exclude.push(...groups);
    } else {
      rest.push(c);
    }
  }
  let include;
  if (rest.length === 0) {
    include = [[]];
  } else if (rest.length === 1) {
    include = asGroups(rest[0]);
  } else {
    include = asGroup({ and: rest });
    include = include ? [include] : null;
  }
  if (!include) return null;
  return { include, exclude };
}

/** The question of a FeasibilityQuery, or null where its filter does not fit. */
export function fromQuery(q, sites = null) {
  const shape = fromFilter(q.filter);
  if (!shape) return null;
  const measures = q.measures.map((m) => m.kind);
  if (measures.some((k) => k !== 'donors' && k !== 'samples')) return null;
  return { ...shape, by: [...(q.group_by || [])], measures, sites };
}

/** A question for the address bar (base64url of its JSON). */
export function encode(state) {
  const bytes = new TextEncoder().encode(JSON.stringify(state));
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The question in an address, or null if it does not read. */
export function decode(text) {
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/**
 * Which values of a breakdown's dimension the question's own filter can
 * match: a test of a key, or null where any value may match. A cell whose
 * key fails it is empty by the question's definition (stem cells in a
 * question about serum), so the app shows it as ruled out, not as noise.
 * Only what the filter says for certain rules a value out: a condition on
 * another column, or one this does not read, rules out nothing.
 */
export function possible(filter, dimension) {
  return allows(filter, dimension);
}

/** Where a dimension's keys come from: the column a filter names, and how
 * a key relates to that column's values. */
const BAND = {
  column: 'age_at_sampling',
  range: (key) => {
    const m = /^(\d+)(?:-(\d+)|\+)$/.exec(String(key));
    return m ? [Number(m[1]), m[2] == null ? Infinity : Number(m[2])] : null;
  },
};
const DERIVED = {
  age_band: BAND,
  age_band_5: BAND,
  diagnosis_3char: {
    column: 'diagnosis',
    code: (key, code) => code.slice(0, 3) === key,
    prefix: (key, prefix) => key.startsWith(prefix) || prefix.startsWith(key),
  },
};

/** The test one filter puts on `dimension`'s keys, or null. */
function allows(f, dimension) {
  if (f === 'true' || f == null) return null;
  const kind = kindOf(f);
  const derived = DERIVED[dimension];
  const column = derived ? derived.column : dimension;
  const all = (tests) => (tests.length ? (v) => tests.every((x) => x(v)) : null);
  switch (kind) {
    case 'and':
      return all(f.and.map((c) => allows(c, dimension)).filter(Boolean));
    case 'or': {
      const parts = f.or.map((c) => allows(c, dimension));
      return parts.some((p) => !p) ? null : (v) => parts.some((p) => p(v));
    }
    case 'not': {
      // NOT rules a value out only where the inner condition is exactly
      // "this column is one of these values".
      const inner = f.not;
      if (!derived && kindOf(inner) === 'in' && inner.in.column === column) {
        const out = new Set(inner.in.values.map(String));
        return (v) => !out.has(String(v));
      }
      return null;
    }
    case 'in': {
      if (f.in.column !== column) return null;
      if (derived && derived.code) return (v) => f.in.values.some((code) => derived.code(String(v), String(code)));
      if (derived) return null;
      const set = new Set(f.in.values.map(String));
      return (v) => set.has(String(v));
    }
    case 'prefix':
      if (f.prefix.column !== column) return null;
      if (derived && derived.prefix) return (v) => derived.prefix(String(v), f.prefix.prefix);
      return derived ? null : (v) => String(v).startsWith(f.prefix.prefix);
    case 'range': {
      if (f.range.column !== column) return null;
      const lo = f.range.min ?? -Infinity;
      const hi = f.range.max ?? Infinity;
      if (derived && derived.range) {
        return (v) => {
          const band = derived.range(v);
          return !band || (band[0] <= hi && band[1] >= lo);
        };
      }
      if (derived) return null;
      return (v) => Number(v) >= lo && Number(v) <= hi;
    }
    default:
      return null;
  }
}

/** Whether the filter rules a breakdown's row out: some key of it is one
 * the filter cannot match. */
export function ruledOut(filter, dimensions, key) {
  return dimensions.some((d, i) => {
    const test = possible(filter, d);
    return test ? !test(key[i]) : false;
  });
}

/** Whether row `i` of an answer is a cell its own filter rules out. */
function outAt(r, key) {
  return r.dimensions.length > 0 && ruledOut(r.query ? r.query.filter : null, r.dimensions, key);
}

/**
 * The answer as JSON to download: as the coordinator sent it, with
 * `ruled_out: true` on every row (the total's and each site's) of a cell
 * the question's own filter rules out, whose numbers are noise alone.
 */
export function withRuledOut(r) {
  const mark = (row) => (outAt(r, row.key) ? { ...row, ruled_out: true } : row);
  return {
    ...r,
    total: r.total.map(mark),
    sites: r.sites.map((s) => (s.result ? { ...s, result: { ...s.result, rows: s.result.rows.map(mark) } } : s)),
  };
}

/**
 * The answer as CSV: one line per site (and the total) and key. A cell the
 * question's own filter rules out has no numbers (they would be noise
 * alone) and says so in `ruled_out_by_question`.
 */
export function toCsv(r) {
  const quote = (s) => (/[",\n]/.test(String(s)) ? `"${String(s).replace(/"/g, '""')}"` : String(s));
  const header = ['site', 'status', ...r.dimensions];
  for (const m of r.measures) header.push(m, `${m}_low`, `${m}_high`);
  header.push('ruled_out_by_question');
  const lines = [header.map(quote).join(',')];
  const blank = r.measures.flatMap(() => ['', '', '']);
  for (const s of r.sites) {
    if (!s.result) {
      lines.push([s.site_id, s.status].map(quote).join(','));
      continue;
    }
    for (const row of s.result.rows) {
      const out = outAt(r, row.key);
      const cells = [s.site_id, s.status, ...row.key];
      if (out) cells.push(...blank);
      else for (const v of row.values) cells.push(v.value, v.interval[0], v.interval[1]);
      cells.push(out ? 'yes' : '');
      lines.push(cells.map(quote).join(','));
    }
  }
  for (const row of r.total) {
    const out = outAt(r, row.key);
    const cells = ['total', '', ...row.key];
    if (out) cells.push(...blank);
    else {
      for (const v of row.values) {
        if (v) cells.push(v.unclamped, v.interval[0], v.interval[1]);
        else cells.push('', '', '');
      }
    }
    cells.push(out ? 'yes' : '');
    lines.push(cells.map(quote).join(','));
  }
  return `${lines.join('\n')}\n`;
}

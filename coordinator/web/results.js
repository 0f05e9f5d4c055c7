// A federated answer as researchers read it: each site's status, the values
// per site and in total with their 95% intervals, a bar chart per
// breakdown with the interval drawn on every bar, a sentence of what the
// numbers mean and what was charged, and export as CSV or JSON.

import { t, num, day, lang } from '/assets/i18n.js';
import * as words from '/assets/words.js';
import { el, clear, scrollable } from '/assets/ui.js';
import { ruledOut, toCsv, withRuledOut } from '/app/model.js';

/**
 * A released value as shown (post-processing, free of privacy cost): below
 * zero it reads 0 with a star (the total still adds the value as released),
 * and its interval is cut at zero but never to a point.
 */
export function shown(value, interval) {
  const half = (interval[1] - interval[0]) / 2;
  const low = Math.max(interval[0], 0);
  const high = Math.max(interval[1], low + half);
  return { value: Math.max(value, 0), star: value < 0, low, high };
}

function round(x) {
  return Math.abs(x - Math.round(x)) < 1e-9 ? num(Math.round(x)) : num(x, 1);
}

function text(s) {
  return `${round(s.value)}${s.star ? '*' : ''} (${round(s.low)}–${round(s.high)})`;
}

function keyLabel(dims, key) {
  return key.map((k, i) => words.value(dims[i], k)).join(' · ');
}

function siteStatus(s) {
  return t(`status.${s.status}`);
}

function symbol(accounting) {
  return accounting === 'zcdp' ? 'ρ' : 'ε';
}

/** `key`'s text for a count of `n`: its `_one` form for one, where the
 * language has one. */
export function counted(key, n, vars) {
  const one = `${key}_one`;
  return n === 1 && t(one) !== one ? t(one, vars) : t(key, vars);
}

/**
 * What a service's own words (English, possibly technical) come with: a
 * sentence in the page's language from the stable `key` (a site status or
 * an error code), then the words themselves, in a disclosure outside
 * English. Returns the nodes to append.
 */
export function plainWords(key, message, hint) {
  const said = [message, hint].filter(Boolean).join(' — ');
  const sentence = t(key) === key ? '' : t(key);
  if (!said) return [sentence];
  if (lang() === 'en' || !sentence) return [sentence, sentence ? ' ' : '', el('span', { lang: 'en' }, said)];
  const details = el('details', { class: 'site-words' }, [el('summary', {}, t('result.site_words')), el('span', { lang: 'en' }, said)]);
  return [sentence, details];
}

/** The sentence under the numbers: what they mean, and what was charged. */
function sentence(r) {
  const answered = r.sites.filter((s) => s.status === 'answered');
  const parts = [counted('result.answered_of', r.sites.length, { answered: answered.length, asked: r.sites.length })];
  const measure = r.measures[0];
  if (!answered.length) {
    // No answer is no number: never "about 0".
    parts.push(t('result.no_answer'));
  } else if (r.dimensions.length === 0 && r.total.length && r.total[0].values[0]) {
    const v = r.total[0].values[0];
    const s = shown(v.unclamped, v.interval);
    parts.push(
      t('result.total_sentence', {
        value: round(s.value),
        low: round(s.low),
        high: round(s.high),
        measure: words.measure({ kind: measure }),
      }),
    );
  } else if (r.dimensions.length) {
    parts.push(t('result.by_sentence', { by: r.dimensions.map(words.column).join(', ') }));
  }
  const charged = answered.map((s) => s.result).filter((x) => x && x.charged > 0 && x.source !== 'approval');
  const approved = answered.filter((s) => s.result && s.result.source === 'approval').length;
  const remembered = answered.filter((s) => s.result && s.result.remembered).length;
  const same = charged.every((x) => x.charged === charged[0].charged && x.accounting === charged[0].accounting);
  if (charged.length && same) {
    const x = charged[0];
    const dp = x.approx_dp ? t('result.approx_dp', { epsilon: num(x.approx_dp.epsilon, 2), delta: x.approx_dp.delta.toExponential(0) }) : '';
    parts.push(counted('result.charged', charged.length, { symbol: symbol(x.accounting), loss: num(x.charged, 3), sites: charged.length, dp }));
  } else if (charged.length) {
    // Sites charged different amounts: each by name.
    const each = answered
      .filter((s) => s.result && s.result.charged > 0 && s.result.source !== 'approval')
      .map((s) => `${s.site_id} ${symbol(s.result.accounting)} ${num(s.result.charged, 3)}`);
    parts.push(t('result.charged_each', { list: each.join(', ') }));
  }
  if (remembered) parts.push(counted('result.remembered', remembered, { sites: remembered }));
  if (approved) parts.push(counted('result.approved', approved, { sites: approved }));
  parts.push(t('result.noise_note'));
  return parts.join(' ');
}

/** The values of every site and the total, per key, as rows; `out` marks
 * a row the question's own filter rules out. */
function matrix(r) {
  const answered = r.sites.filter((s) => s.result);
  const filter = r.query ? r.query.filter : null;
  return r.total.map((row, i) => ({
    key: row.key,
    out: r.dimensions.length > 0 && ruledOut(filter, r.dimensions, row.key),
    sites: answered.map((s) => ({ site: s.site_id, values: s.result.rows[i] ? s.result.rows[i].values : [] })),
    total: row.values,
  }));
}

/** The table of values: one row per key, a column per site and the total. */
function valuesTable(r, m, cls = 'values') {
  const rows = matrix(r);
  const answered = r.sites.filter((s) => s.result).map((s) => s.site_id);
  const table = el('table', { class: cls, 'data-measure': r.measures[m] });
  const caption = el('caption', {}, t('result.values_caption', { measure: words.measure({ kind: r.measures[m] }) }));
  const head = el('tr', {}, [
    ...r.dimensions.map((d) => el('th', { scope: 'col' }, words.column(d))),
    ...answered.map((s) => el('th', { scope: 'col' }, s)),
    el('th', { scope: 'col' }, t('result.total')),
  ]);
  table.append(caption, el('thead', {}, head));
  const body = el('tbody');
  let unequal = false;
  for (const row of rows) {
    const cells = r.dimensions.length
      ? row.key.map((k, i) => el('th', { scope: 'row' }, words.value(r.dimensions[i], k)))
      : [];
    if (row.out) {
      // Empty by the question's own definition: no number, and no noise.
      cells.push(el('td', { class: 'ruled-out', colspan: row.sites.length + 1 }, t('result.ruled_out')));
      body.append(el('tr', { class: 'ruled-out-row' }, cells));
      continue;
    }
    const tv = row.total[m];
    if (tv && row.sites.length > 1) {
      const sum = row.sites.reduce((acc, s) => acc + (s.values[m] ? Math.round(shown(s.values[m].value, s.values[m].interval).value) : 0), 0);
      if (sum !== Math.round(shown(tv.unclamped, tv.interval).value)) unequal = true;
    }
    for (const s of row.sites) {
      const v = s.values[m];
      cells.push(el('td', { 'data-site': s.site }, v ? text(shown(v.value, v.interval)) : '–'));
    }
    cells.push(el('td', { 'data-site': 'total' }, tv ? text(shown(tv.unclamped, tv.interval)) : '–'));
    body.append(el('tr', {}, cells));
  }
  table.append(body);
  const scroll = scrollable(table, caption.textContent);
  if (!unequal) return scroll;
  // Right under the numbers that do not add up: why they need not.
  return el('div', { class: 'values-box' }, [scroll, el('p', { class: 'footnote sum-note' }, t('result.sum_note'))]);
}

/** The smallest round number (1, 1.2, 1.5, 2, … 8 × 10^k) at or above `x`: an axis top. */
function niceCeil(x) {
  const power = 10 ** Math.floor(Math.log10(x));
  return [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((m) => m * power).find((v) => v >= x);
}

const COLORS = ['#1f5fa8', '#b3541e', '#2e7d32', '#6a3d9a', '#8c6d1f', '#00695c'];

/**
 * A bar chart of one measure: per key a bar for each site and one for the
 * total (on its own scale), each with its 95% interval as a whisker.
 */
function chart(r, m, series) {
  const rows = matrix(r);
  const width = 760;
  const barW = Math.max(6, Math.min(22, Math.floor(600 / (rows.length * series.length + rows.length))));
  const groupW = barW * series.length + 10;
  const plotH = 200;
  const left = 56;
  const height = plotH + 120;
  const chartW = Math.max(width, left + rows.length * groupW + 20);
  const values = [];
  for (const row of rows.filter((x) => !x.out)) {
    for (const s of series) {
      const v = s.pick(row)[m];
      if (v) values.push(shown(s.value(v), v.interval).high);
    }
  }
  const top = niceCeil(Math.max(1, ...values));
  const y = (v) => plotH - (v / top) * plotH + 10;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${chartW} ${height}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('class', 'chart');
  const measureName = words.measure({ kind: r.measures[m] });
  const label = r.dimensions.length
    ? t('result.chart_label', { measure: measureName, by: r.dimensions.map(words.column).join(', ') })
    : t('result.chart_label_sites', { measure: measureName });
  svg.setAttribute('aria-label', label);
  const add = (name, attrs, content) => {
    const node = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (content !== undefined) node.textContent = content;
    svg.append(node);
    return node;
  };
  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    add('line', { x1: left, x2: chartW - 10, y1: y(v), y2: y(v), class: 'grid' });
    add('text', { x: left - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, round(v));
  }
  rows.forEach((row, i) => {
    const x0 = left + 8 + i * groupW;
    if (row.out) return;
    series.forEach((s, j) => {
      const v = s.pick(row)[m];
      if (!v) return;
      const sv = shown(s.value(v), v.interval);
      const x = x0 + j * barW;
      const bar = add('rect', {
        x,
        y: y(sv.value),
        width: barW - 2,
        height: Math.max(0, plotH + 10 - y(sv.value)),
        fill: s.color,
        class: 'bar',
      });
      const title = document.createElementNS(ns, 'title');
      title.textContent = `${s.name}, ${keyLabel(r.dimensions, row.key) || t('result.all')}: ${text(sv)}`;
      bar.append(title);
      const cx = x + (barW - 2) / 2;
      add('line', { x1: cx, x2: cx, y1: y(sv.high), y2: y(sv.low), class: 'whisker' });
      add('line', { x1: cx - 3, x2: cx + 3, y1: y(sv.high), y2: y(sv.high), class: 'whisker' });
      add('line', { x1: cx - 3, x2: cx + 3, y1: y(sv.low), y2: y(sv.low), class: 'whisker' });
    });
    const name = keyLabel(r.dimensions, row.key) || t('result.all');
    add(
      'text',
      {
        x: x0 + (barW * series.length) / 2,
        y: plotH + 24,
        class: 'key',
        transform: `rotate(35 ${x0 + (barW * series.length) / 2} ${plotH + 24})`,
      },
      name.length > 22 ? `${name.slice(0, 21)}…` : name,
    );
  });
  const figure = el('figure', { class: 'chart-box' });
  const legend = el(
    'figcaption',
    {},
    [
      el('span', {}, label),
      ...series.map((s) => {
        const swatch = el('span', { class: 'swatch' });
        swatch.style.background = s.color;
        return el('span', { class: 'legend' }, [swatch, s.name]);
      }),
      el('span', { class: 'legend' }, [el('span', { class: 'whisker-key' }), t('result.interval_key')]),
    ],
  );
  figure.append(svg, legend);
  return figure;
}

/** The answer's section: sentence, sites, values, charts, export. */
export function render(container, r, { onLookAgain, negotiator } = {}) {
  clear(container);
  container.append(el('p', { class: 'sentence', id: 'answer-sentence' }, sentence(r)));

  const sites = el('table', { class: 'sites', id: 'site-status' });
  sites.append(
    el('caption', {}, t('result.sites_caption')),
    el('thead', {}, el('tr', {}, [
      el('th', { scope: 'col' }, t('result.site')),
      el('th', { scope: 'col' }, t('result.status')),
      el('th', { scope: 'col' }, t('result.detail')),
    ])),
  );
  const body = el('tbody');
  for (const s of r.sites) {
    let detail = '';
    if (s.status === 'answered' && s.result) {
      if (s.result.source === 'catalogue') {
        detail = t('result.site_catalogue', { date: versionDate(s.result.dataset_version) });
      } else if (s.result.source === 'approval') {
        detail = s.result.charged > 0
          ? t('result.site_approved_charged', { symbol: symbol(s.result.accounting), loss: num(s.result.charged, 3) })
          : t('result.site_approved_free');
        if (s.result.steward_note) detail = [detail, el('br'), el('span', { class: 'steward-note' }, t('result.steward_note', { note: s.result.steward_note }))];
      } else {
        detail = s.result.remembered
          ? t('result.site_remembered')
          : t('result.site_charged', { symbol: symbol(s.result.accounting), loss: num(s.result.charged, 3) });
      }
    } else if (s.status === 'waiting_for_approval') {
      // The site's own words name its ticket and API; a researcher needs
      // only what happens next.
      detail = t('result.waiting_plain', { site: s.site_id });
    } else {
      detail = plainWords(`status_help.${s.status}`, s.message, s.hint);
    }
    body.append(
      el('tr', { 'data-site': s.site_id, 'data-status': s.status }, [
        el('th', { scope: 'row' }, s.site_id),
        el('td', { class: `status status-${s.status}` }, siteStatus(s)),
        el('td', {}, detail),
      ]),
    );
  }
  sites.append(body);
  container.append(scrollable(sites, t('result.sites_caption')));

  if (r.sites.some((s) => s.status === 'waiting_for_approval') && onLookAgain) {
    const again = el('button', { type: 'button', id: 'look-again' }, t('result.look_again'));
    again.addEventListener('click', onLookAgain);
    container.append(el('p', { class: 'waiting' }, [t('result.waiting_note'), ' ', again]));
  }

  if (!r.total.length || !r.sites.some((s) => s.result)) return;
  const siteSeries = r.sites
    .filter((s) => s.result)
    .map((s, i) => ({
      name: s.site_id,
      color: COLORS[i % COLORS.length],
      pick: (row) => row.sites.find((x) => x.site === s.site_id).values,
      value: (v) => v.value,
    }));
  const totalSeries = [{ name: t('result.total'), color: '#37474f', pick: (row) => row.total, value: (v) => v.unclamped }];
  // Donors first: the count a feasibility question turns on.
  const order = r.measures.map((label, m) => [label, m]).sort(([a], [b]) => (a === 'donors' ? -1 : b === 'donors' ? 1 : 0));
  order.forEach(([label, m]) => {
    const section = el('section', { class: 'measure' }, el('h3', {}, words.measure({ kind: label })));
    if (r.dimensions.length) {
      section.append(chart(r, m, totalSeries.filter((s) => r.total.some((row) => row.values[m]))));
      section.append(chart(r, m, siteSeries));
    } else {
      // One number per site and the total: one chart of them all.
      section.append(chart(r, m, [...siteSeries, ...totalSeries.filter(() => r.total.some((row) => row.values[m]))]));
    }
    section.append(valuesTable(r, m));
    container.append(section);
  });
  if (r.sites.some((s) => s.result && s.result.rows.some((row) => row.values.some((v) => v.value < 0)))) {
    container.append(el('p', { class: 'footnote' }, t('result.star_note')));
  }
  if (matrix(r).some((row) => row.out)) {
    container.append(el('p', { class: 'footnote', id: 'ruled-out-note' }, t('result.ruled_out_note')));
  }
  const csv = el('button', { type: 'button', id: 'export-csv' }, t('result.export_csv'));
  csv.addEventListener('click', () => download(`bonebank-${r.id ?? 'answer'}.csv`, 'text/csv', toCsv(r)));
  const json = el('button', { type: 'button', id: 'export-json' }, t('result.export_json'));
  json.addEventListener('click', () =>
    download(`bonebank-${r.id ?? 'answer'}.json`, 'application/json', JSON.stringify(withRuledOut(r), null, 2)),
  );
  container.append(el('p', { class: 'export' }, [csv, ' ', json]));
  if (negotiator && r.id != null) container.append(handOffSection(r, negotiator));
}

/** A dataset version's date (its id begins with it) as the language
 * writes a day. */
function versionDate(v) {
  return /^\d{8}/.test(v || '') ? day(`${v.slice(0, 4)}-${v.slice(4, 6)}-${v.slice(6, 8)}`) : v;
}

/**
 * The live estimate from the sites' catalogues (a preview's `estimate`):
 * where each site's numbers come from, and a table per measure, donors
 * first. Released data: free, and said so.
 */
export function estimate(r) {
  const out = [el('h3', {}, t('estimate.title'))];
  const from = r.sites
    .filter((s) => s.result)
    .map((s) => t('estimate.from', { site: s.site_id, date: versionDate(s.result.dataset_version) }));
  out.push(el('p', { class: 'help', id: 'estimate-from' }, `${from.join('; ')}. ${t('estimate.free')}`));
  const order = r.measures.map((label, m) => [label, m]).sort(([a], [b]) => (a === 'donors' ? -1 : b === 'donors' ? 1 : 0));
  for (const [, m] of order) out.push(valuesTable(r, m, 'estimate-values'));
  return out;
}

/** From the answer to a sample request in the BBMRI-ERIC Negotiator:
 * download the request, or send it where the coordinator has a Negotiator. */
function handOffSection(r, { canSend, handOff }) {
  const section = el('section', { id: 'negotiator', class: 'handoff' }, [
    el('h3', {}, t('negotiator.title')),
    el('p', { class: 'help' }, t('negotiator.help')),
  ]);
  const status = el('p', { id: 'negotiator-status', role: 'status' });
  const failed = (e) => {
    clear(status).append([e.message, e.hint].filter(Boolean).join(' — '));
  };
  const get = el('button', { type: 'button', id: 'negotiator-download' }, t('negotiator.download'));
  get.addEventListener('click', async () => {
    try {
      const h = await handOff(false);
      download(`negotiator-request-${r.id}.json`, 'application/json', JSON.stringify(h.request, null, 2));
    } catch (e) {
      failed(e);
    }
  });
  const buttons = [get];
  if (canSend) {
    const send = el('button', { type: 'button', id: 'negotiator-send' }, t('negotiator.send'));
    send.addEventListener('click', async () => {
      send.disabled = true;
      try {
        const h = await handOff(true);
        clear(status).append(
          t('negotiator.sent'),
          ' ',
          el('a', { href: h.redirect_url, id: 'negotiator-link', rel: 'noopener' }, t('negotiator.continue')),
        );
      } catch (e) {
        failed(e);
      } finally {
        send.disabled = false;
      }
    });
    buttons.push(' ', send);
  }
  section.append(el('p', {}, buttons), status);
  return section;
}

function download(name, type, content) {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

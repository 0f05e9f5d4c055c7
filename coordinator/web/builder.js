// Building a question without SQL: the catalogue of every filterable column
// with the public values the sites describe, criteria as removable chips in
// groups (AND within a group, OR between groups, and exclusion groups), the
// measures, the breakdown and the sites to ask.

import { t } from '/assets/i18n.js';
import { api } from '/assets/api.js';
import * as words from '/assets/words.js';
import { el, clear, debounce } from '/assets/ui.js';

/** Which columns the catalogue shows under which heading. */
const SECTIONS = [
  { id: 'sample', columns: ['sample_type', 'material_subtype', 'storage_temperature', 'sampling_year', 'aliquots_available', 'passage_number'] },
  { id: 'donor', columns: ['sex', 'age_at_sampling', 'consent_research', 'consent_commercial', 'consent_genetic', 'consent_autologous', 'consent_allogeneic'] },
  { id: 'diagnosis', columns: ['diagnosis'] },
  { id: 'site', columns: ['site_id', 'country'] },
];

/** What the sites' public descriptions offer, merged. */
export function catalogue(listings) {
  const values = new Map();
  const filters = new Map();
  const dimensions = [];
  let maxDimensions = Infinity;
  for (const s of listings) {
    const d = s.description;
    if (!d) continue;
    maxDimensions = Math.min(maxDimensions, d.max_dimensions);
    for (const dim of d.dimensions) {
      if (!values.has(dim.name)) {
        values.set(dim.name, []);
        dimensions.push(dim.name);
      }
      const known = values.get(dim.name);
      for (const v of dim.values) if (!known.includes(v)) known.push(v);
    }
    for (const f of d.filters) filters.set(f.name, f.operators);
  }
  const kind = (column) => {
    if (column === 'diagnosis') return 'codes';
    if (column.startsWith('consent_')) return 'flag';
    const ops = filters.get(column) || '';
    if (ops.includes('BETWEEN') || !values.has(column)) return 'range';
    return 'values';
  };
  return {
    sections: SECTIONS.map((s) => ({ ...s, columns: s.columns.filter((c) => filters.has(c)) })).filter((s) => s.columns.length),
    values: (column) => values.get(column) || [],
    kind,
    dimensions,
    maxDimensions: Number.isFinite(maxDimensions) ? maxDimensions : 2,
    sites: listings.map((s) => s.site_id),
  };
}

/** A criterion in words, for its chip. */
export function chipText(c) {
  const name = words.column(c.column);
  switch (c.kind) {
    case 'in':
      return `${name}: ${c.values.map((v) => words.value(c.column, v)).join(` ${t('words.or')} `)}`;
    case 'range':
      if (c.min != null && c.max != null) return `${name}: ${c.min}–${c.max}`;
      if (c.min != null) return `${name} ≥ ${c.min}`;
      if (c.max != null) return `${name} ≤ ${c.max}`;
      return t('words.recorded', { column: name });
    case 'codes':
      return `${name}: ${c.entries.map((e) => (e.prefix ? `${e.code}*` : e.code)).join(` ${t('words.or')} `)}`;
    case 'null':
      return t('words.none_recorded', { column: name });
    default:
      return name;
  }
}

/**
 * The builder. `state` is the question (see model.js), `changed` is called
 * whenever it changes.
 */
/** The sensible values of each range column: a question outside them can
 * only be refused or answer nothing, and would still cost a fresh charge. */
const RANGES = {
  age_at_sampling: [0, 130],
  sampling_year: [1900, new Date().getFullYear()],
  passage_number: [0, 1000],
  aliquots_available: [0, 100000],
};

/** Why a range typed into the builder cannot be asked, or null. */
export function rangeProblem(column, minText, maxText) {
  const [floor, ceiling] = RANGES[column] || [0, Number.MAX_SAFE_INTEGER];
  const read = (text) => (text === '' ? null : Number(text));
  const lo = read(minText);
  const hi = read(maxText);
  for (const v of [lo, hi]) {
    if (v == null) continue;
    if (!Number.isInteger(v)) return t('range.whole_numbers');
    if (v < floor || v > ceiling) return t('range.outside', { floor, ceiling });
  }
  if (lo != null && hi != null && lo > hi) return t('range.reversed', { lo, hi });
  return null;
}

export class Builder {
  constructor(catalogueEl, questionEl, cat, state, changed) {
    this.catalogueEl = catalogueEl;
    this.questionEl = questionEl;
    this.cat = cat;
    this.state = state;
    this.changed = changed;
    this.target = { list: 'include', index: 0 };
    this.searchCodes = debounce((q, out) => this.codes(q, out), 250);
    this.findCodes = debounce((q, out) => this.criteriaCodes(q, out), 250);
    /** The criteria the researcher opened in the tree: kept open when the
     * tree is drawn again (a language switch, a link followed). */
    this.open = new Set(['diagnosis']);
  }

  set(state) {
    this.state = state;
    this.target = { list: 'include', index: 0 };
    this.render();
  }

  render() {
    this.renderCatalogue();
    this.renderQuestion();
  }

  update() {
    this.renderQuestion();
    this.changed(this.state);
  }

  /** Adds (or widens) a criterion in the active group. */
  add(criterion) {
    const list = this.state[this.target.list];
    if (!list[this.target.index]) list[this.target.index] = [];
    const group = list[this.target.index];
    const same = group.find((c) => c.column === criterion.column && c.kind === criterion.kind);
    if (same && criterion.kind === 'in') {
      for (const v of criterion.values) if (!same.values.includes(v)) same.values.push(v);
    } else if (same && criterion.kind === 'codes') {
      for (const e of criterion.entries) {
        if (!same.entries.some((x) => x.code === e.code && x.prefix === e.prefix)) same.entries.push(e);
      }
    } else if (same && criterion.kind === 'range') {
      Object.assign(same, { min: criterion.min, max: criterion.max });
    } else {
      group.push(criterion);
    }
    this.update();
  }

  renderCatalogue() {
    const root = clear(this.catalogueEl);
    root.append(el('h2', { id: 'catalogue-title' }, t('catalogue.title')));
    // One search across every criterion and value (and the diagnoses):
    // type, press Enter (or the down arrow, then Enter), and it is added.
    const search = el('input', {
      type: 'search',
      id: 'criteria-search',
      autocomplete: 'off',
      'aria-describedby': 'criteria-help',
      'aria-controls': 'criteria-results',
    });
    const results = el('ul', { id: 'criteria-results', class: 'criteria-results', 'aria-live': 'polite' });
    search.addEventListener('input', () => this.findCriteria(search.value, results));
    search.addEventListener('keydown', (ev) => {
      const first = results.querySelector('button');
      if (!first) return;
      if (ev.key === 'Enter') {
        ev.preventDefault();
        first.click();
      } else if (ev.key === 'ArrowDown') {
        ev.preventDefault();
        first.focus();
      }
    });
    results.addEventListener('keydown', (ev) => {
      const buttons = [...results.querySelectorAll('button')];
      const at = buttons.indexOf(document.activeElement);
      if (ev.key === 'ArrowDown' && at < buttons.length - 1) buttons[at + 1].focus();
      else if (ev.key === 'ArrowUp') (at > 0 ? buttons[at - 1] : search).focus();
      else if (ev.key === 'Escape') search.focus();
      else return;
      ev.preventDefault();
    });
    root.append(
      el('label', { for: 'criteria-search', class: 'search-label' }, t('catalogue.search')),
      search,
      el('p', { class: 'help', id: 'criteria-help' }, t('catalogue.search_help')),
      results,
    );
    // The tree: sections, and in them each criterion, folded until opened.
    for (const section of this.cat.sections) {
      const details = el('details', { open: true, id: `section-${section.id}` });
      details.append(el('summary', {}, t(`catalogue.${section.id}`)));
      for (const column of section.columns) details.append(this.branch(column));
      root.append(details);
    }
  }

  /** A criterion of the tree: its name, folded, and its field inside. */
  branch(column) {
    const node = el('details', { class: 'criterion', id: `open-${column}`, open: this.open.has(column) });
    node.append(el('summary', {}, words.column(column)));
    node.addEventListener('toggle', () => {
      if (node.open) this.open.add(column);
      else this.open.delete(column);
    });
    node.append(this.field(column));
    return node;
  }

  /** Opens a criterion of the tree and puts the keyboard in its first field. */
  reveal(column) {
    const node = document.getElementById(`open-${column}`);
    if (!node) return;
    node.open = true;
    this.open.add(column);
    const first = node.querySelector('input, select, button');
    if (first) first.focus();
  }

  /** After a criterion is added from the search: back to the search, its
   * text selected, so that the next one can be typed at once. */
  backToSearch() {
    const search = document.getElementById('criteria-search');
    if (!search) return;
    search.focus();
    search.select();
  }

  /** What the search finds: breakdowns, values and criteria by name (and
   * diagnoses, from the code list, as they arrive). */
  findCriteria(query, out) {
    const q = query.trim().toLowerCase();
    clear(out);
    if (!q) return;
    const items = [];
    const matches = (text) => text.toLowerCase().includes(q);
    // Closest first: the whole text, its start, a word's start, anywhere.
    const score = (...texts) => Math.min(...texts.map((x) => {
      const l = x.toLowerCase();
      if (l === q) return 0;
      if (l.startsWith(q)) return 1;
      if (l.split(/[\s,()-]+/).some((w) => w.startsWith(q))) return 2;
      return l.includes(q) ? 3 : 4;
    }));
    for (const section of this.cat.sections) {
      for (const column of section.columns) {
        const name = words.column(column);
        const kind = this.cat.kind(column);
        if (kind === 'values') {
          for (const v of this.cat.values(column)) {
            const label = words.value(column, v);
            if (matches(label) || matches(name)) {
              items.push({ text: `${name}: ${label}`, kind: 'value', score: Math.min(score(label), score(name) + 1), act: () => this.add({ column, kind: 'in', values: [v] }) });
            }
          }
        } else if (kind === 'flag' && matches(name)) {
          for (const value of [true, false]) {
            items.push({ text: `${name}: ${value ? t('words.yes') : t('words.no')}`, kind: 'value', score: score(name), act: () => this.add({ column, kind: 'in', values: [value] }) });
          }
        } else if (kind === 'range' && matches(name)) {
          items.push({ text: t('catalogue.give_range', { column: name }), kind: 'range', score: score(name), act: () => this.reveal(column), stay: true });
        }
      }
    }
    // Breakdowns after criteria of the same closeness: "age" is first
    // the age at sampling.
    for (const d of this.cat.dimensions) {
      if (matches(words.column(d)) && !this.state.by.includes(d) && this.state.by.length < this.cat.maxDimensions) {
        items.push({ text: t('catalogue.break_down', { column: words.column(d) }), kind: 'by', score: score(words.column(d)), act: () => this.breakDown(d) });
      }
    }
    items.sort((a, b) => a.score - b.score);
    for (const item of items.slice(0, 12)) out.append(this.found(item));
    if (q.length >= 2 && this.cat.kind('diagnosis') === 'codes' && this.cat.sections.some((s) => s.columns.includes('diagnosis'))) {
      this.findCodes(query, out);
    }
    if (!items.length && q.length < 2) out.append(el('li', { class: 'none' }, t('catalogue.nothing_found')));
  }

  /** One thing the search found, as a button that adds it. */
  found({ text, kind, act, stay }) {
    const button = el('button', { type: 'button', class: `found found-${kind}` }, text);
    button.addEventListener('click', () => {
      act();
      if (!stay) this.backToSearch();
    });
    return el('li', {}, button);
  }

  /** Diagnoses for the search, each added with its subcodes. */
  async criteriaCodes(query, out) {
    let found = [];
    try {
      found = await api(`/v1/codes?q=${encodeURIComponent(query)}`);
    } catch {
      found = [];
    }
    const search = document.getElementById('criteria-search');
    if (!search || search.value !== query) return;
    for (const li of out.querySelectorAll('li.found-code, li.none')) li.remove();
    const lang = document.documentElement.lang;
    for (const m of found.slice(0, 8)) {
      const title = m[lang] || m.en || '';
      const item = this.found({
        text: t('catalogue.found_code', { code: m.code, title }),
        kind: 'code',
        act: () => this.add({ column: 'diagnosis', kind: 'codes', entries: [{ code: m.code, prefix: true }] }),
      });
      item.classList.add('found-code');
      item.dataset.code = m.code;
      out.append(item);
    }
    if (!out.querySelector('button')) out.append(el('li', { class: 'none' }, t('catalogue.nothing_found')));
  }

  /** Adds a breakdown (within the sites' limit). */
  breakDown(d) {
    if (this.state.by.includes(d) || this.state.by.length >= this.cat.maxDimensions) return;
    this.state.by.push(d);
    this.update();
  }

  field(column) {
    const kind = this.cat.kind(column);
    const box = el('fieldset', { class: `field field-${kind}`, id: `crit-${column}` });
    box.append(el('legend', {}, words.column(column)));
    if (kind === 'values') {
      const list = el('div', { class: 'choices' });
      for (const v of this.cat.values(column)) {
        const id = `v-${column}-${v}`.replace(/[^\w-]/g, '_');
        list.append(
          el('label', { for: id, class: 'choice' }, [
            el('input', { type: 'checkbox', id, name: `value-${column}`, value: v }),
            ' ',
            words.value(column, v),
          ]),
        );
      }
      const add = el('button', { type: 'button', id: `add-${column}`, class: 'add' }, t('catalogue.add'));
      add.addEventListener('click', () => {
        const picked = [...list.querySelectorAll('input:checked')].map((i) => i.value);
        if (!picked.length) return;
        for (const i of list.querySelectorAll('input:checked')) i.checked = false;
        this.add({ column, kind: 'in', values: picked });
      });
      box.append(list, add);
    } else if (kind === 'range') {
      const enter = (ev) => {
        if (ev.key === 'Enter') {
          ev.preventDefault();
          add.click();
        }
      };
      const min = el('input', { type: 'number', id: `min-${column}`, inputmode: 'numeric' });
      const max = el('input', { type: 'number', id: `max-${column}`, inputmode: 'numeric' });
      const add = el('button', { type: 'button', id: `add-${column}`, class: 'add' }, t('catalogue.add'));
      const problem = el('p', { class: 'error', id: `range-error-${column}`, role: 'alert', hidden: true });
      min.addEventListener('keydown', enter);
      max.addEventListener('keydown', enter);
      min.setAttribute('aria-describedby', problem.id);
      max.setAttribute('aria-describedby', problem.id);
      add.addEventListener('click', () => {
        const why = rangeProblem(column, min.value, max.value);
        problem.hidden = !why;
        problem.textContent = why || '';
        if (why) return;
        const lo = min.value === '' ? null : Number(min.value);
        const hi = max.value === '' ? null : Number(max.value);
        if (lo == null && hi == null) return;
        this.add({ column, kind: 'range', min: lo, max: hi });
        // Typed from the keyboard: on to the next criterion.
        if (document.activeElement === min || document.activeElement === max) this.backToSearch();
      });
      box.append(
        el('label', { for: `min-${column}` }, t('catalogue.from')), min,
        el('label', { for: `max-${column}` }, t('catalogue.to')), max,
        add,
        problem,
      );
    } else if (kind === 'flag') {
      for (const value of [true, false]) {
        const b = el('button', { type: 'button', id: `add-${column}-${value}`, class: 'add' }, value ? t('words.yes') : t('words.no'));
        b.addEventListener('click', () => this.add({ column, kind: 'in', values: [value] }));
        box.append(b, ' ');
      }
    } else if (kind === 'codes') {
      const input = el('input', {
        type: 'search',
        id: 'diagnosis-search',
        autocomplete: 'off',
        'aria-describedby': 'diagnosis-help',
      });
      const out = el('ul', { class: 'codes', id: 'diagnosis-results', 'aria-live': 'polite' });
      input.addEventListener('input', () => this.searchCodes(input.value, out));
      box.append(
        el('label', { for: 'diagnosis-search' }, t('catalogue.diagnosis_search')),
        input,
        el('p', { class: 'help', id: 'diagnosis-help' }, t('catalogue.diagnosis_help')),
        out,
      );
    }
    return box;
  }

  async codes(query, out) {
    if (query.trim().length < 2) {
      clear(out);
      return;
    }
    let found = [];
    try {
      found = await api(`/v1/codes?q=${encodeURIComponent(query)}`);
    } catch {
      found = [];
    }
    clear(out);
    if (!found.length) {
      out.append(el('li', { class: 'none' }, t('catalogue.no_codes')));
      return;
    }
    const lang = document.documentElement.lang;
    for (const m of found) {
      const title = m[lang] || m.en || '';
      // The visible words, with the code before them for a screen reader.
      const hidden = () => el('span', { class: 'visually-hidden' }, `${m.code} `);
      const exact = el('button', { type: 'button', class: 'add-code' }, [hidden(), t('catalogue.exact')]);
      exact.addEventListener('click', () => this.add({ column: 'diagnosis', kind: 'codes', entries: [{ code: m.code, prefix: false }] }));
      const prefix = el('button', { type: 'button', class: 'add-prefix' }, [hidden(), t('catalogue.with_subcodes')]);
      prefix.addEventListener('click', () => this.add({ column: 'diagnosis', kind: 'codes', entries: [{ code: m.code, prefix: true }] }));
      out.append(el('li', { 'data-code': m.code }, [el('b', {}, m.code), ` ${title} `, exact, ' ', prefix]));
    }
  }

  renderQuestion() {
    const root = clear(this.questionEl);
    root.append(el('h2', { id: 'question-title' }, t('question.title')));
    root.append(this.groups('include'));
    root.append(this.groups('exclude'));
    root.append(this.measures(), this.breakdown(), this.sites());
  }

  groups(list) {
    const box = el('div', { class: `groups groups-${list}`, id: `groups-${list}` });
    box.append(el('h3', {}, t(`question.${list}`)));
    const groups = this.state[list];
    groups.forEach((group, index) => {
      if (index > 0) box.append(el('p', { class: 'or' }, t('words.or').toUpperCase()));
      const active = this.target.list === list && this.target.index === index;
      const card = el('div', { class: `group${active ? ' active' : ''}`, 'data-group': `${list}-${index}` });
      const radio = el('input', { type: 'radio', name: 'target', id: `target-${list}-${index}`, checked: active });
      radio.addEventListener('change', () => {
        this.target = { list, index };
        this.renderQuestion();
      });
      card.append(
        el('label', { for: `target-${list}-${index}`, class: 'target' }, [radio, ' ', t('question.add_here', { n: index + 1 })]),
      );
      const chips = el('ul', { class: 'chips' });
      if (!group.length) chips.append(el('li', { class: 'empty' }, t(list === 'include' ? 'question.every_sample' : 'question.nothing_yet')));
      group.forEach((c, ci) => {
        const remove = el('button', { type: 'button', class: 'remove', 'aria-label': t('question.remove', { what: chipText(c) }) }, '×');
        remove.addEventListener('click', () => {
          group.splice(ci, 1);
          this.update();
        });
        chips.append(el('li', { class: 'chip', 'data-column': c.column }, [chipText(c), ' ', remove]));
      });
      card.append(chips);
      if (groups.length > 1 || list === 'exclude') {
        const drop = el('button', { type: 'button', class: 'link' }, t('question.remove_group'));
        drop.addEventListener('click', () => {
          groups.splice(index, 1);
          if (list === 'include' && !groups.length) groups.push([]);
          this.target = { list: 'include', index: 0 };
          this.update();
        });
        card.append(drop);
      }
      box.append(card);
    });
    const more = el('button', { type: 'button', id: `new-${list}` }, t(list === 'include' ? 'question.new_or_group' : 'question.new_exclusion'));
    more.addEventListener('click', () => {
      groups.push([]);
      this.target = { list, index: groups.length - 1 };
      this.update();
    });
    box.append(more);
    return box;
  }

  measures() {
    const box = el('fieldset', { class: 'inline', id: 'measures' }, el('legend', {}, t('question.measures')));
    for (const kind of ['donors', 'samples']) {
      const input = el('input', { type: 'checkbox', id: `measure-${kind}`, checked: this.state.measures.includes(kind) });
      input.addEventListener('change', () => {
        this.state.measures = ['donors', 'samples'].filter((k) => document.getElementById(`measure-${k}`).checked);
        this.update();
      });
      box.append(el('label', { for: `measure-${kind}` }, [input, ' ', words.measure({ kind })]));
    }
    return box;
  }

  breakdown() {
    const box = el('fieldset', { class: 'inline', id: 'breakdown' }, el('legend', {}, t('question.breakdown', { n: this.cat.maxDimensions })));
    for (const d of this.cat.dimensions) {
      const checked = this.state.by.includes(d);
      const full = this.state.by.length >= this.cat.maxDimensions;
      const input = el('input', { type: 'checkbox', id: `by-${d}`, checked, disabled: !checked && full });
      input.addEventListener('change', () => {
        if (input.checked) this.state.by.push(d);
        else this.state.by = this.state.by.filter((x) => x !== d);
        this.update();
      });
      box.append(el('label', { for: `by-${d}` }, [input, ' ', words.column(d)]));
    }
    return box;
  }

  sites() {
    const box = el('fieldset', { class: 'inline', id: 'sites-choice' }, el('legend', {}, t('question.sites')));
    for (const s of this.cat.sites) {
      const checked = !this.state.sites || this.state.sites.includes(s);
      const input = el('input', { type: 'checkbox', id: `site-${s}`, checked });
      input.addEventListener('change', () => {
        const picked = this.cat.sites.filter((x) => document.getElementById(`site-${x}`).checked);
        this.state.sites = picked.length === this.cat.sites.length ? null : picked;
        this.update();
      });
      box.append(el('label', { for: `site-${s}` }, [input, ' ', s]));
    }
    return box;
  }
}

// The researcher's app at the coordinator: sign in, build a question from
// the catalogue (or write SQL), see what it would cost, ask, read the
// answer, come back to it, share it.

import * as i18n from '/assets/i18n.js';
import { t, num } from '/assets/i18n.js';
import { api, setCsrf, signOut, ApiError } from '/assets/api.js';
import * as words from '/assets/words.js';
import { el, clear, announce, debounce, scrollable } from '/assets/ui.js';
import * as model from '/app/model.js';
import { Builder, catalogue } from '/app/builder.js';
import * as results from '/app/results.js';

const app = {
  who: null,
  listings: [],
  cat: null,
  state: model.empty(),
  /** SQL typed by hand that does not fit the builder: asked as written. */
  sql: null,
  answer: null,
  builder: null,
  /** The history as last fetched: drawn again, not fetched, on a language switch. */
  history: null,
  /** What the question is for, where a steward decides; the sites that want it. */
  purpose: { text: '', reference: '' },
  approvalSites: [],
};

const $ = (id) => document.getElementById(id);

const { counted } = results;

function showError(where, e) {
  if (e instanceof ApiError && e.status === 401) {
    // The session ended: sign in again, and come back to this question.
    const again = el('a', { class: 'button', id: 'sign-in-again', href: '/auth/login' }, t('signin.button'));
    again.addEventListener('click', keepHashForSignIn);
    clear(where).append(el('p', { class: 'error', role: 'alert' }, [t('session.expired'), ' ', again]));
    return;
  }
  const message = e instanceof ApiError ? results.plainWords(`error.${e.code}`, e.message, e.hint) : String(e.message || e);
  clear(where).append(el('p', { class: 'error', role: 'alert' }, message));
}

/** The request for the current question. */
function request() {
  const body = app.sql ? { sql: app.sql } : { query: model.toQuery(app.state) };
  if (app.state.sites) body.sites = app.state.sites;
  const loss = chosenLoss();
  if (loss != null) body.loss = loss;
  const text = app.purpose.text.trim();
  if (app.approvalSites.length && text) {
    body.purpose = { text };
    if (app.purpose.reference.trim()) body.purpose.reference = app.purpose.reference.trim();
  }
  return body;
}

/** Where a data steward decides, the question goes with its purpose: a
 * sentence (and optionally a project reference) asked for only then. */
function renderPurpose(sites) {
  app.approvalSites = sites;
  const box = $('purpose-box');
  box.hidden = !sites.length;
  clear(box);
  if (!sites.length) return;
  const text = el('textarea', { id: 'purpose', rows: 2, 'aria-describedby': 'purpose-help' });
  text.value = app.purpose.text;
  text.addEventListener('input', () => {
    app.purpose.text = text.value;
    gate();
  });
  const ref = el('input', { type: 'text', id: 'project-ref' });
  ref.value = app.purpose.reference;
  ref.addEventListener('input', () => {
    app.purpose.reference = ref.value;
  });
  box.append(
    el('h2', {}, t('purpose.title')),
    el('p', { class: 'help', id: 'purpose-help' }, t('purpose.help', { sites: sites.join(', ') })),
    el('label', { for: 'purpose' }, t('purpose.label')),
    text,
    el('label', { for: 'project-ref' }, t('purpose.reference')),
    ref,
  );
}

/** Ask waits for a purpose where a steward decides. */
function gate() {
  const missing = app.approvalSites.length && !app.purpose.text.trim();
  askable(missing ? t('ask.purpose_needed', { sites: app.approvalSites.join(', ') }) : null);
}

/** How much more than the sites' default a fresh answer may spend for a
 * tighter interval: the noise's spread falls with the square root. */
const PRECISIONS = [0.5, 1, 2, 4];

/** The loss a chosen precision spends at every asked site: the smallest
 * default times the factor, within every site's allowed range; null for
 * the sites' own defaults. */
function chosenLoss() {
  const factor = app.state.precision || 1;
  if (factor === 1) return null;
  const asked = app.listings.filter((s) => s.description && (!app.state.sites || app.state.sites.includes(s.site_id)));
  if (!asked.length) return null;
  const base = Math.min(...asked.map((s) => s.description.loss.default));
  const ceiling = Math.min(...asked.map((s) => s.description.loss.max));
  const floor = Math.max(...asked.map((s) => s.description.loss.min));
  return Math.max(Math.min(base * factor, ceiling), floor);
}

/** The precision choice, under the cost: spend more for a tighter answer. */
function precisionChoice() {
  const select = el('select', { id: 'precision' });
  for (const f of PRECISIONS) {
    select.append(el('option', { value: String(f), selected: (app.state.precision || 1) === f }, t(`precision.x${String(f).replace('.', '_')}`)));
  }
  select.addEventListener('change', () => {
    app.state.precision = Number(select.value);
    writeHash(null);
    refreshCost();
  });
  return el('p', { class: 'precision' }, [
    el('label', { for: 'precision' }, t('precision.label')),
    ' ',
    select,
    ' ',
    el('span', { class: 'help', id: 'precision-help' }, t('precision.help')),
  ]);
}

/** About how many more questions like this one a budget pays for. */
function questionsLeft(budget, loss) {
  const left = Math.min(budget.user.remaining, budget.project.remaining);
  return loss > 0 ? Math.floor(left / loss + 1e-9) : null;
}

function readHash() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  return { q: params.get('q'), a: params.get('a') };
}

function writeHash(answerId) {
  const params = new URLSearchParams();
  params.set('q', model.encode({ ...app.state, sql: app.sql }));
  if (answerId != null) params.set('a', String(answerId));
  history.replaceState(null, '', `#${params}`);
}

async function boot() {
  await i18n.use(i18n.preferred());
  i18n.apply();
  $('lang-slot').append(i18n.switcher(rerender));
  i18n.apply($('lang-slot'));
  try {
    app.who = await api('/v1/whoami');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      $('signin').hidden = false;
      // The question in the address does not travel through the
      // provider: it waits here for the way back.
      $('sign-in').addEventListener('click', keepHashForSignIn);
      return;
    }
    showError($('main'), e);
    return;
  }
  const saved = sessionStorage.getItem(RETURN_KEY);
  sessionStorage.removeItem(RETURN_KEY);
  if (saved && !window.location.hash) history.replaceState(null, '', saved);
  setCsrf(app.who.csrf);
  // Signed in, the skip link goes straight to the question.
  $('skip').setAttribute('href', '#question');
  $('sign-out').hidden = false;
  $('sign-out').addEventListener('click', signOut);
  $('app').hidden = false;
  app.listings = await api('/v1/sites');
  app.cat = catalogue(app.listings);
  const { a } = readHash();
  takeHashQuestion();
  app.builder = new Builder($('catalogue'), $('question'), app.cat, app.state, changed);
  $('ask').addEventListener('click', () => ask(false));
  $('ask-fresh').addEventListener('click', () => ask(true));
  rerender();
  if (a) await lookAgain(Number(a));
  await loadHistory();
  // A link pasted into the open tab is followed like one opened anew.
  window.addEventListener('hashchange', followHash);
}

/** Where the question waits while the browser signs in. */
const RETURN_KEY = 'bonebank.return';

/** Keeps the question in the address while the browser is at the provider. */
function keepHashForSignIn() {
  if (window.location.hash) sessionStorage.setItem(RETURN_KEY, window.location.hash);
}

/** Makes the question the address names the app's; false if it names none. */
function takeHashQuestion() {
  const { q } = readHash();
  const restored = q ? model.decode(q) : null;
  if (!restored) return false;
  app.sql = restored.sql || null;
  delete restored.sql;
  app.state = { ...model.empty(), ...restored };
  return true;
}

/** The question (and answer) the address names now. */
async function followHash() {
  if (!takeHashQuestion()) return;
  const { a } = readHash();
  app.builder.set(app.state);
  renderWords();
  refreshCost();
  if (a) await lookAgain(Number(a));
  else clear($('answer'));
}

/** Everything drawn again, in the current language. */
function rerender() {
  i18n.apply();
  renderWho();
  renderNotice();
  app.builder.render();
  renderWords();
  refreshCost();
  if (app.answer) showAnswer({ quiet: true });
  drawHistory();
}

function renderWho() {
  const w = app.who;
  clear($('who')).append(
    t('app.signed_in_as', { user: w.user, role: t(`role.${w.role}`), project: w.project }),
  );
}

/** For industry partners: what the sites restrict their counts to. */
function renderNotice() {
  const box = clear($('notice'));
  const role = app.who.role;
  const held = app.listings.filter((s) => s.description && s.description.role_filters && s.description.role_filters[role]);
  if (!held.length) return;
  const list = el('ul');
  for (const s of held) {
    const filter = s.description.role_filters[role];
    // The consent filter in words; any other as the site states it.
    const said = /^\s*consent_commercial\s*=\s*true\s*$/i.test(filter) ? t('notice.consent_words') : filter;
    list.append(el('li', {}, `${s.site_id}: ${said}`));
  }
  const key = held.every((s) => /consent_commercial\s*=\s*true/i.test(s.description.role_filters[role]))
    ? 'notice.commercial'
    : 'notice.role_filter';
  box.append(el('div', { class: 'notice', id: 'role-notice', role: 'note' }, [el('p', {}, t(key, { role: t(`role.${role}`) })), list]));
}

function changed() {
  app.sql = null;
  renderWords();
  writeHash(null);
  refreshCost();
}

/** The question in words and as SQL (editable). */
function renderWords() {
  const box = clear($('words'));
  box.append(el('h2', {}, t('question.in_words')));
  const sentence = el('p', { id: 'question-words' });
  box.append(sentence);
  if (app.sql) {
    sentence.textContent = t('question.custom_sql');
    const back = el('button', { type: 'button', id: 'back-to-builder' }, t('question.back_to_builder'));
    back.addEventListener('click', () => {
      app.sql = null;
      renderWords();
      refreshCost();
    });
    box.append(el('p', {}, back));
  } else {
    sentence.textContent = words.question(model.toQuery(app.state));
  }
  const details = el('details', { id: 'sql-box' });
  details.append(el('summary', {}, t('question.show_sql')));
  const area = el('textarea', { id: 'sql', rows: 4, spellcheck: 'false', 'aria-label': t('question.sql_label') });
  const note = el('p', { id: 'sql-note', class: 'help' });
  const apply = el('button', { type: 'button', id: 'apply-sql' }, t('question.apply_sql'));
  apply.addEventListener('click', () => applySql(area.value, note));
  details.append(area, el('p', {}, apply), note);
  box.append(details);
  fillSql(area);
}

async function fillSql(area) {
  if (app.sql) {
    area.value = app.sql;
    return;
  }
  try {
    const checked = await api('/v1/check', { method: 'POST', body: { query: model.toQuery(app.state) } });
    area.value = checked.sql;
  } catch (e) {
    area.value = '';
  }
}

/** SQL typed by hand: back into chips where it fits, else asked as written. */
async function applySql(sql, note) {
  try {
    const checked = await api('/v1/check', { method: 'POST', body: { sql } });
    const back = model.fromQuery(checked.query, app.state.sites);
    if (back) {
      app.state = back;
      app.sql = null;
      app.builder.set(app.state);
      renderWords();
      announce(t('question.sql_applied'));
    } else {
      app.sql = sql;
      renderWords();
      $('sql-note').textContent = t('question.sql_kept');
    }
    writeHash(null);
    refreshCost();
  } catch (e) {
    showError(note, e);
    // What was typed cannot be asked; Ask must not send the question
    // from before in its place.
    if (e.status === 400) askable(t('ask.not_askable', { why: e.message }));
  }
}

/** Budgets left at each site, and what this question would cost there.
 * Only the latest call draws: an earlier one's answers may come later. */
/** Allows Ask (and Ask afresh) or holds it back, saying why. */
function askable(why) {
  for (const id of ['ask', 'ask-fresh']) $(id).disabled = Boolean(why);
  const note = $('ask-why');
  note.hidden = !why;
  note.textContent = why || '';
}

let costLoads = 0;
const refreshCost = debounce(async () => {
  const box = $('cost');
  const mine = ++costLoads;
  const body = request();
  const question = body.query || null;
  if (question && !question.measures.length) {
    clear(box).append(el('p', { class: 'help' }, t('cost.pick_a_measure')));
    askable(t('ask.no_measure'));
    return;
  }
  if (body.sites && !body.sites.length) {
    clear(box).append(el('p', { class: 'help' }, t('ask.no_sites')));
    askable(t('ask.no_sites'));
    return;
  }
  let budgets = [];
  let preview = null;
  try {
    [budgets, preview] = await Promise.all([
      api('/v1/budgets'),
      api('/v1/preview', { method: 'POST', body }),
    ]);
  } catch (e) {
    if (mine !== costLoads) return;
    showError(clear(box), e);
    // A question the coordinator turns away is not worth sending; a
    // failure of another kind may pass.
    askable(e.status === 400 ? t('ask.not_askable', { why: e.message }) : null);
    return;
  }
  if (mine !== costLoads) return;
  // Nothing is sent that no site would answer: refused everywhere, or
  // past every site's budget.
  const answerable = preview.sites.filter((x) => x.preview);
  const fresh = answerable.filter((x) => x.preview.loss > 0);
  const affordable = fresh.filter((x) => {
    const b = budgets.find((y) => y.site_id === x.site_id);
    return !b || !b.budget || questionsLeft(b.budget, x.preview.loss) > 0;
  });
  if (fresh.length && !affordable.length && fresh.length === answerable.length) {
    askable(t('ask.over_budget'));
  } else if (!answerable.length) {
    const reasons = [...new Set(preview.sites.map((x) => x.message).filter(Boolean))];
    askable(t('ask.no_site_answers', { why: reasons.join('; ') || t('status.refused') }));
  } else {
    // Sites where a steward decides want the question's purpose first.
    renderPurpose(answerable.filter((x) => x.preview.needs_approval).map((x) => x.site_id));
    gate();
  }
  if (!answerable.length) renderPurpose([]);
  clear(box).append(el('h2', {}, t('cost.title')));
  const table = el('table', { id: 'cost-table' });
  const measures = preview.query.measures;
  table.append(
    el('thead', {}, el('tr', {}, [
      el('th', { scope: 'col' }, t('result.site')),
      el('th', { scope: 'col' }, t('cost.budget_left')),
      el('th', { scope: 'col' }, t('cost.would_cost')),
      ...measures.map((m) => el('th', { scope: 'col' }, t('cost.plus_minus', { measure: words.measure(m) }))),
    ])),
  );
  const tbody = el('tbody');
  for (const s of preview.sites) {
    const b = budgets.find((x) => x.site_id === s.site_id);
    const sym = s.preview && s.preview.accounting === 'pure' ? 'ε' : 'ρ';
    let left;
    if (b && b.budget) {
      // In questions, as a researcher plans: how many more like this one,
      // and when spending comes back (charges leave a rolling period).
      const n = s.preview ? questionsLeft(b.budget, s.preview.loss) : null;
      const renews = b.budget.user.renews || b.budget.project.renews;
      const lines = [];
      if (n != null) lines.push(counted('cost.questions_left', n, { n: num(n), site: s.site_id }));
      else if (s.preview) lines.push(t('cost.free_here'));
      if (renews) lines.push(t('cost.renews', { date: i18n.day(renews) }));
      lines.push(t('cost.left', { symbol: sym, user: num(b.budget.user.remaining, 3), project: num(b.budget.project.remaining, 3) }));
      left = lines.map((l, i) => el(i ? 'span' : 'strong', { class: i ? 'help' : 'left' }, l)).flatMap((x, i) => (i ? [el('br'), x] : [x]));
    } else {
      left = t(`status.${b ? b.status : 'unreachable'}`);
    }
    const cells = [el('th', { scope: 'row' }, s.site_id), el('td', { class: 'budget-left' }, left)];
    if (s.preview) {
      const p = s.preview;
      const cost = [`${sym} ${num(p.loss, 3)}`];
      if (p.approx_dp) cost.push(` (ε ${num(p.approx_dp.epsilon, 2)}, δ ${p.approx_dp.delta.toExponential(0)})`);
      if (p.needs_approval) cost.push(` — ${t('cost.needs_approval')}`);
      // Which path the question takes here, and why.
      if (s.source === 'catalogue') cost.push(` — ${t('cost.from_catalogue')}`);
      else if (s.why_fresh_code) {
        const key = `fresh.${s.why_fresh_code}`;
        const why = t(key) === key ? s.why_fresh : t(key);
        cost.push(` — ${t('cost.fresh_because', { why })}`);
      }
      cells.push(el('td', {}, cost.join('')));
      for (const m of p.measures) cells.push(el('td', {}, m.halfwidth == null ? t('cost.depends') : `±${num(Math.round(m.halfwidth))}`));
    } else {
      cells.push(el('td', { colspan: measures.length + 1 }, [el('strong', {}, t(`status.${s.status}`)), ' ', ...results.plainWords(`status_help.${s.status}`, s.message, s.hint)]));
    }
    tbody.append(el('tr', { 'data-site': s.site_id }, cells));
  }
  table.append(tbody);
  box.append(scrollable(table, t('cost.title')));
  box.append(precisionChoice());
  const totals = preview.total_halfwidth
    .map((h, i) => (h == null ? null : t('cost.total_pm', { measure: words.measure(measures[i]), pm: num(Math.round(h)) })))
    .filter(Boolean);
  if (totals.length) box.append(el('p', { class: 'help' }, totals.join(' · ')));
  if (preview.estimate) {
    box.append(el('section', { id: 'estimate', 'aria-live': 'polite' }, results.estimate(preview.estimate)));
  }
}, 350);

/** Asks the question: from the catalogues where they answer it, or, with
 * `fresh`, measured afresh at every site (charged, and more precise). */
async function ask(fresh) {
  const buttons = [$('ask'), $('ask-fresh')];
  for (const b of buttons) b.disabled = true;
  announce(t('answer.asking'));
  clear($('answer')).append(el('p', { class: 'help' }, t('answer.asking')));
  try {
    const body = request();
    if (fresh) body.fresh = true;
    app.answer = await api('/v1/query', { method: 'POST', body });
    showAnswer({ focus: true });
    writeHash(app.answer.id);
    await loadHistory();
    refreshCost();
  } catch (e) {
    showError($('answer'), e);
    announce(t('answer.failed'), 'error');
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

/** What the answer's section can do: look again, and hand the answer to
 * the Negotiator (sent from here where the coordinator has one). */
function answerOptions() {
  const id = app.answer.id;
  return {
    onLookAgain: () => lookAgain(id),
    negotiator: {
      canSend: Boolean(app.who && app.who.negotiator),
      handOff: (send) => api(`/v1/history/${id}/negotiator`, { method: 'POST', body: { send } }),
    },
  };
}

/** Draws the answer under its heading. `focus` moves the keyboard there
 * (after Ask); `quiet` draws it again without announcing it (a language
 * switch, a look that found nothing new). */
function showAnswer({ focus = false, quiet = false } = {}) {
  const heading = el('h2', { id: 'answer-title', tabindex: '-1' }, t('answer.title'));
  clear($('answer')).append(heading);
  const body = el('div', { id: 'answer-body' });
  $('answer').append(body);
  results.render(body, app.answer, answerOptions());
  if (!quiet) announce(t('answer.ready'));
  if (focus) heading.focus();
  pollWhileWaiting();
}

/** How often the app looks again while a site waits for its steward, and
 * for how long at most (a ticket left open for days is not polled for days). */
const POLL_MS = 5000;
const POLL_FOR_MS = 30 * 60 * 1000;
let poll = { timer: null, id: null, since: 0 };

/** While a site of the answer on screen waits for a steward, looks again
 * every few seconds, so that the site fills in without a reload. */
function pollWhileWaiting() {
  clearTimeout(poll.timer);
  const r = app.answer;
  const waiting = r && r.id != null && r.sites.some((s) => s.status === 'waiting_for_approval');
  if (!waiting) {
    poll = { timer: null, id: null, since: 0 };
    return;
  }
  if (poll.id !== r.id) poll = { timer: null, id: r.id, since: Date.now() };
  if (Date.now() - poll.since > POLL_FOR_MS) return;
  poll.timer = setTimeout(async () => {
    if (document.hidden || !app.answer || app.answer.id !== r.id) {
      pollWhileWaiting();
      return;
    }
    await lookAgain(r.id, { polled: true });
  }, POLL_MS);
}

/** Asks waiting sites again and shows the answer as it is now. A `polled`
 * look leaves the builder alone (the researcher may be writing the next
 * question) and speaks only when a site filled in. */
async function lookAgain(id, { polled = false } = {}) {
  try {
    const before = app.answer;
    const answer = await api(`/v1/history/${id}`);
    if (polled && (!app.answer || app.answer.id !== id)) return;
    app.answer = answer;
    if (!polled) {
      const back = model.fromQuery(app.answer.query, app.state.sites);
      if (back && !app.sql) {
        app.state = back;
        app.builder.set(app.state);
        renderWords();
      }
      writeHash(id);
    }
    const filled = polled && before && before.sites.some((s, i) => s.status !== (answer.sites[i] || {}).status);
    if (polled && !filled) {
      pollWhileWaiting();
      return;
    }
    showAnswer();
    if (filled) await loadHistory();
  } catch (e) {
    if (polled) {
      pollWhileWaiting();
      return;
    }
    if (e instanceof ApiError && e.status === 404) {
      // Someone else's answer: theirs stays theirs, and the question is
      // here, ready to estimate or to ask.
      writeHash(null);
      clear($('answer')).append(el('p', { class: 'help', id: 'not-yours' }, t('answer.not_yours')));
      return;
    }
    showError($('answer'), e);
  }
}

/** Which loadHistory call is the latest: an older one that finishes later
 * must not draw over it. */
let historyLoads = 0;

/** Fetches the history (once on load, and after each question) and draws it. */
async function loadHistory() {
  const mine = ++historyLoads;
  let entries;
  try {
    entries = await api('/v1/history');
  } catch {
    return;
  }
  if (mine !== historyLoads) return;
  app.history = entries;
  drawHistory();
}

/** Draws the history as last fetched, in the current language. */
function drawHistory() {
  const box = $('history');
  const entries = app.history;
  if (!entries) return;
  clear(box).append(el('h2', {}, t('history.title')));
  if (!entries.length) {
    box.append(el('p', { class: 'help' }, t('history.empty')));
    return;
  }
  const list = el('ol', { id: 'history-list', reversed: true });
  for (const e of entries) {
    const state = model.fromQuery(e.query) || model.empty();
    const link = el('a', { href: `#q=${model.encode(state)}&a=${e.id}` }, words.question(e.query));
    link.addEventListener('click', (ev) => {
      ev.preventDefault();
      history.replaceState(null, '', link.getAttribute('href'));
      lookAgain(e.id);
    });
    const statuses = e.result.sites.map((s) => `${s.site_id}: ${t(`status.${s.status}`)}`).join(', ');
    list.append(el('li', {}, [el('time', { datetime: e.at }, i18n.when(e.at)), ' ', link, el('br'), el('span', { class: 'help' }, statuses)]));
  }
  box.append(list);
}

boot().catch((e) => showError(document.getElementById('main'), e));

// A site's data stewards' pages: the approval queue, the budget spent at
// the site, the audit log with its check, and the policy in force. Served
// by the node on a listener of its own; only stewards of this site get in.

import * as i18n from '/assets/i18n.js';
import { t, num, upTo } from '/assets/i18n.js';
import { api, setCsrf, signOut, ApiError } from '/assets/api.js';
import * as words from '/assets/words.js';
import { el, clear, announce } from '/assets/ui.js';
import * as policy from '/steward/policy.js';

const $ = (id) => document.getElementById(id);
const state = { site: '', who: null, accounting: 'zcdp', auditFilter: {} };

function showError(where, e) {
  const message = e instanceof ApiError ? [e.message, e.hint].filter(Boolean).join(' — ') : String(e.message || e);
  where.append(el('p', { class: 'error', role: 'alert' }, message));
}

function symbolOf(accounting) {
  return accounting === 'pure' ? 'ε' : 'ρ';
}

function when(rfc3339) {
  return i18n.when(rfc3339);
}

/** How long until `rfc3339`, in days and hours. */
function until(rfc3339) {
  const ms = new Date(rfc3339) - Date.now();
  if (ms <= 0) return t('steward.expired');
  const hours = Math.floor(ms / 3_600_000);
  return t('steward.expires_in', { days: Math.floor(hours / 24), hours: hours % 24 });
}

async function boot() {
  await i18n.use(i18n.preferred());
  $('lang-slot').append(i18n.switcher(render));
  const site = await api('/api/site');
  state.site = site.site_id;
  try {
    state.who = await api('/api/whoami');
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      showSignIn();
      return;
    }
    throw e;
  }
  setCsrf(state.who.csrf);
  state.accounting = (await api('/api/policy')).accounting;
  $('sign-out').hidden = false;
  $('sign-out').addEventListener('click', signOut);
  $('pages').hidden = false;
  window.addEventListener('hashchange', render);
  render();
}

function showSignIn() {
  i18n.apply();
  $('site-title').textContent = t('steward.title', { site: state.site });
  $('signin-title').textContent = t('steward.signin_title', { site: state.site });
  const refused = new URLSearchParams(window.location.search).get('refused');
  if (refused === 'role' || refused === 'site') {
    $('refused').hidden = false;
    $('refused').textContent = t(`steward.refused_${refused}`, { site: state.site });
  }
  $('signin').hidden = false;
}

function render() {
  if (!state.who) {
    showSignIn();
    return;
  }
  i18n.apply();
  $('site-title').textContent = t('steward.title', { site: state.site });
  $('who').textContent = t('steward.signed_in_as', { user: state.who.user });
  const tab = (window.location.hash || '#queue').slice(1);
  for (const name of ['queue', 'budget', 'audit', 'policy', 'report']) {
    const link = $(`tab-${name}`);
    if (name === tab) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const view = clear($('view'));
  const views = { queue, budget, audit, policy: showPolicy, report };
  (views[tab] || queue)(view).catch((e) => showError(view, e));
}

/** The year's report for the data-protection officer, as HTML or PDF. */
async function report(view) {
  view.append(el('h2', {}, t('report.page_title')), el('p', { class: 'help' }, t('report.page_help')));
  const thisYear = new Date().getUTCFullYear();
  const select = el('select', { id: 'report-year' });
  for (let y = thisYear; y > thisYear - 5; y -= 1) select.append(el('option', { value: y }, String(y)));
  const open = el('a', { id: 'report-open', class: 'button', target: '_blank', rel: 'noopener' }, t('report.open'));
  const pdf = el('a', { id: 'report-pdf', class: 'button', download: '' }, t('report.pdf'));
  const point = () => {
    const q = new URLSearchParams({ year: select.value, lang: i18n.lang() });
    open.href = `/api/report?${q}`;
    pdf.href = `/api/report?${q}&format=pdf`;
  };
  select.addEventListener('change', point);
  point();
  view.append(
    el('p', {}, [el('label', { for: 'report-year' }, t('report.year_label')), ' ', select]),
    el('p', { class: 'actions' }, [open, ' ', pdf]),
  );
}

/** The approval queue: waiting requests first, then the latest decided. */
async function queue(view) {
  view.append(el('h2', {}, t('steward.queue_title', { site: state.site })));
  // The policy, to say in words which rule sent each question here.
  const [requests, rules] = await Promise.all([api('/api/approvals'), api('/api/policy').then((p) => p.rules)]);
  state.rules = rules;
  const waiting = requests.filter((r) => r.state === 'pending');
  const decided = requests.filter((r) => r.state !== 'pending');
  view.append(el('h3', {}, t('steward.waiting', { n: waiting.length })));
  if (!waiting.length) view.append(el('p', { class: 'help', id: 'queue-empty' }, t('steward.nothing_waiting')));
  const list = el('div', { id: 'queue-waiting' });
  for (const r of waiting) list.append(request(r, true));
  view.append(list);
  view.append(el('h3', {}, t('steward.decided')));
  if (!decided.length) view.append(el('p', { class: 'help' }, t('steward.nothing_decided')));
  const done = el('div', { id: 'queue-decided' });
  for (const r of decided) done.append(request(r, false));
  view.append(done);
}

function request(r, open) {
  const sym = symbolOf(state.accounting);
  const card = el('article', { class: 'group request', 'data-ticket': r.ticket, 'data-user': r.user, 'data-state': r.state });
  card.append(
    el('h4', {}, t('steward.request_from', { user: r.user, role: t(`role.${r.role}`), project: r.project, when: when(r.created) })),
    el('p', { class: 'question-words' }, r.query ? words.question(r.query) : ''),
    r.purpose
      ? el('p', { class: 'purpose' }, [el('strong', {}, t('steward.purpose')), ' ', r.purpose.text, r.purpose.reference ? ` (${r.purpose.reference})` : ''])
      : el('p', { class: 'purpose help' }, t('steward.no_purpose')),
    el('details', {}, [el('summary', {}, t('steward.sql_as_run')), el('code', { class: 'sql' }, r.sql)]),
  );
  const facts = el('dl', { class: 'kv' });
  facts.append(
    el('dt', {}, t('steward.would_charge')),
    el('dd', {}, `${sym} ${num(r.loss, 3)}`),
    el('dt', {}, t('steward.spent_user', { user: r.user })),
    el('dd', {}, t('steward.spent_left', { sym, spent: num(r.user_spent, 3), left: num(r.user_remaining, 3) })),
    el('dt', {}, t('steward.spent_project', { project: r.project })),
    el('dd', {}, t('steward.spent_left', { sym, spent: num(r.project_spent, 3), left: num(r.project_remaining, 3) })),
  );
  if (r.approvals_required > 1) {
    facts.append(
      el('dt', {}, t('steward.approvals')),
      el('dd', { class: 'approvals' }, r.first_approval
        ? t('steward.approvals_first', { who: r.first_approval })
        : t('steward.approvals_none', { n: r.approvals_required })),
    );
  }
  const rule = r.rule && state.rules && state.rules[r.rule - 1];
  if (rule) facts.append(el('dt', {}, t('steward.why_here')), el('dd', { class: 'rule' }, policy.ruleText(rule, r.rule - 1)));
  if (r.history) {
    facts.append(
      el('dt', {}, t('steward.record', { user: r.user })),
      el('dd', { class: 'record' }, t('steward.record_line', {
        answered: num(r.history.answered), approved: num(r.history.approved), rejected: num(r.history.rejected),
      })),
    );
  }
  if (open) {
    facts.append(el('dt', {}, t('steward.expires')), el('dd', {}, until(r.expires)));
  } else {
    facts.append(
      el('dt', {}, t('steward.state')),
      el('dd', { class: `state-${r.state}` }, t(`steward.state_${r.state}`)),
    );
    if (r.decided_by) {
      facts.append(el('dt', {}, t('steward.decided_by')), el('dd', {}, t('steward.by_at', { who: r.decided_by, when: when(r.decided_at) })));
    }
    if (r.reason) facts.append(el('dt', {}, t('steward.reason')), el('dd', {}, r.reason));
  }
  card.append(facts);
  if (open) card.append(decisionForm(r));
  return card;
}

function decisionForm(r) {
  const form = el('form', { class: 'decide' });
  const approve = el('button', { type: 'button', class: 'primary approve' }, t('steward.approve'));
  const reasonId = `reason-${r.ticket}`;
  const reason = el('textarea', { id: reasonId, rows: 2, name: 'reason' });
  const reject = el('button', { type: 'button', class: 'reject' }, t('steward.reject'));
  const out = el('div', { 'aria-live': 'polite' });
  const decide = async (decision) => {
    if (decision === 'reject' && !reason.value.trim()) {
      clear(out).append(el('p', { class: 'error' }, t('steward.reason_needed')));
      reason.focus();
      return;
    }
    approve.disabled = true;
    reject.disabled = true;
    try {
      // A note goes with an approval where the steward wrote one; a
      // rejection always has its reason.
      const body = reason.value.trim() ? { decision, reason: reason.value.trim() } : { decision };
      const status = await api(`/api/approvals/${encodeURIComponent(r.ticket)}`, { method: 'POST', body });
      const note = status.state === 'pending' ? 'steward.first_approval_note' : decision === 'approve' ? 'steward.approved_note' : 'steward.rejected_note';
      announce(t(note, { user: r.user }));
      render();
    } catch (e) {
      approve.disabled = false;
      reject.disabled = false;
      showError(clear(out), e);
    }
  };
  // A decision is asked for once more, with what it means, before it is
  // sent: an approval charges the requester's budget and releases numbers.
  const confirmThen = (decision) => {
    if (decision === 'reject' && !reason.value.trim()) {
      decide(decision);
      return;
    }
    const sym = symbolOf(state.accounting);
    const yes = el('button', { type: 'button', class: `primary confirm confirm-${decision}` }, t(`steward.confirm_${decision}_yes`));
    const no = el('button', { type: 'button', class: 'cancel' }, t('steward.cancel'));
    yes.addEventListener('click', () => decide(decision));
    no.addEventListener('click', () => {
      clear(out);
      (decision === 'approve' ? approve : reject).focus();
    });
    clear(out).append(el('p', { class: 'confirm-box', role: 'alertdialog', 'aria-label': t(`steward.confirm_${decision}_yes`) }, [
      t(`steward.confirm_${decision}`, { user: r.user, sym, loss: num(r.loss, 3) }),
      ' ',
      yes,
      ' ',
      no,
    ]));
    yes.focus();
  };
  approve.addEventListener('click', () => confirmThen('approve'));
  reject.addEventListener('click', () => confirmThen('reject'));
  form.append(
    el('label', { for: reasonId }, t('steward.reason_label')),
    reason,
    el('p', {}, [approve, ' ', reject]),
    out,
  );
  return form;
}

/** The site's budget: totals, per user and project, and releases per day. */
async function budget(view) {
  const l = await api('/api/ledger');
  const sym = symbolOf(l.accounting);
  view.append(el('h2', {}, t('steward.budget_title', { days: l.period_days })));
  view.append(el('p', { id: 'site-total' }, t('steward.site_total', { sym, spent: num(l.site.spent, 3), limit: num(l.site.limit, 2), left: num(l.site.remaining, 3) })));
  if (l.yearly) {
    const y = l.yearly;
    view.append(el('p', { id: 'site-yearly' }, t('steward.site_yearly', {
      spent: num(y.spent, 3), total: upTo(y.total, 2), catalogues: upTo(y.catalogues, 2), fresh: upTo(y.fresh, 2),
      eps: upTo(y.approx_dp.epsilon, 1), delta: y.approx_dp.delta.toExponential(),
    })));
  }
  if (l.catalogue) {
    const c = l.catalogue;
    view.append(el('p', { id: 'site-catalogue' }, t('steward.site_catalogue', {
      date: c.measured_at.slice(0, 10), version: c.dataset_version, loss: upTo(c.loss, 2),
      eps: upTo(c.approx_dp.epsilon, 2), tables: num(c.tables), cells: num(c.cells),
    })));
    if (c.consented_tables) {
      view.append(el('p', { id: 'site-catalogue-consented' }, t('steward.site_catalogue_consented', {
        tables: num(c.consented_tables), loss: upTo(c.consented_loss, 2),
      })));
    }
  } else if (l.no_catalogue) {
    view.append(el('p', { id: 'site-catalogue' }, t('steward.site_no_catalogue', { why: l.no_catalogue })));
  }
  const table = (caption, id, rows) => {
    const tb = el('table', { id });
    tb.append(
      el('caption', {}, caption),
      el('thead', {}, el('tr', {}, [
        el('th', { scope: 'col' }, t('steward.name')),
        el('th', { scope: 'col' }, t('steward.spent')),
        el('th', { scope: 'col' }, t('steward.left')),
        el('th', { scope: 'col' }, t('steward.limit')),
      ])),
    );
    const body = el('tbody');
    for (const a of rows) {
      body.append(el('tr', {}, [el('th', { scope: 'row' }, a.name), el('td', {}, `${sym} ${num(a.spent, 3)}`), el('td', {}, `${sym} ${num(a.remaining, 3)}`), el('td', {}, `${sym} ${num(a.limit, 3)}`)]));
    }
    if (!rows.length) body.append(el('tr', {}, el('td', { colspan: 4 }, t('steward.none_yet'))));
    tb.append(body);
    return tb;
  };
  view.append(table(t('steward.by_user'), 'budget-users', l.users));
  view.append(table(t('steward.by_project'), 'budget-projects', l.projects));
  view.append(el('h3', {}, t('steward.releases_title')));
  if (!l.days.length) {
    view.append(el('p', { class: 'help' }, t('steward.none_yet')));
    return;
  }
  const days = el('table', { id: 'budget-days' });
  days.append(el('thead', {}, el('tr', {}, [
    el('th', { scope: 'col' }, t('steward.day')),
    el('th', { scope: 'col' }, t('steward.releases')),
    el('th', { scope: 'col' }, t('steward.spent')),
    el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, t('steward.bar'))),
  ])));
  const body = el('tbody');
  const most = Math.max(...l.days.map((d) => d.spent), 1e-9);
  for (const d of l.days) {
    const bar = el('span', { class: 'day-bar' });
    bar.style.width = `${Math.round((d.spent / most) * 160)}px`;
    body.append(el('tr', {}, [el('th', { scope: 'row' }, d.day), el('td', {}, num(d.releases)), el('td', {}, `${sym} ${num(d.spent, 3)}`), el('td', {}, bar)]));
  }
  days.append(body);
  view.append(days);
}

/** The audit log, newest first, filterable, with the chain's check. */
async function audit(view) {
  view.append(el('h2', {}, t('steward.audit_title')));
  const form = el('form', { id: 'audit-filter', class: 'inline' });
  const field = (name, label) => {
    const input = el('input', { id: `audit-${name}`, name, value: state.auditFilter[name] || '' });
    return el('label', { for: `audit-${name}` }, [label, ' ', input]);
  };
  const kind = el('select', { id: 'audit-kind', name: 'kind' });
  for (const k of ['', 'request', 'decision', 'policy', 'dataset', 'import']) {
    const o = el('option', { value: k }, k ? t(`steward.kind_${k}`) : t('steward.kind_any'));
    if ((state.auditFilter.kind || '') === k) o.selected = true;
    kind.append(o);
  }
  const apply = el('button', { type: 'submit' }, t('steward.filter'));
  form.append(field('user', t('steward.user')), ' ', field('project', t('steward.project')), ' ', el('label', { for: 'audit-kind' }, [t('steward.kind'), ' ', kind]), ' ', apply);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    state.auditFilter = { user: $('audit-user').value, project: $('audit-project').value, kind: kind.value };
    render();
  });
  view.append(form);
  const body = el('div');
  view.append(body);
  await auditPage(body, null);
}

async function auditPage(body, before) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(state.auditFilter)) if (v) params.set(k, v);
  if (before) params.set('before', before);
  const page = await api(`/api/audit?${params}`);
  if (!before) {
    const status = page.intact
      ? el('p', { id: 'chain-status', class: 'ok', 'data-intact': 'true' }, t('steward.chain_intact', { n: page.total, head: page.head }))
      : el('p', { id: 'chain-status', class: 'broken', 'data-intact': 'false', role: 'alert' }, t('steward.chain_broken', { why: page.broken }));
    const exportLink = el('a', { href: '/api/audit/export', class: 'button', id: 'audit-export', download: `audit-${state.site}.jsonl` }, t('steward.export'));
    const csvLink = el('a', { href: '/api/audit/export.csv', class: 'button', id: 'audit-export-csv', download: `audit-${state.site}.csv` }, t('steward.export_csv'));
    body.append(status, el('p', {}, [exportLink, ' ', csvLink]), el('p', { class: 'help' }, t('steward.export_help')));
  }
  const table = el('table', { class: 'audit' });
  if (!before) {
    table.append(el('thead', {}, el('tr', {}, [
      el('th', { scope: 'col' }, '#'),
      el('th', { scope: 'col' }, t('steward.when')),
      el('th', { scope: 'col' }, t('steward.kind')),
      el('th', { scope: 'col' }, t('steward.actor')),
      el('th', { scope: 'col' }, t('steward.what')),
    ])));
  }
  const rows = el('tbody');
  for (const e of page.entries) {
    rows.append(el('tr', { 'data-seq': e.seq }, [
      el('td', {}, String(e.seq)),
      el('td', {}, when(e.at)),
      el('td', {}, t(`steward.kind_${e.kind}`)),
      el('td', {}, e.actor),
      el('td', {}, [
        el('span', { class: 'audit-sentence' }, sentence(e)),
        el('details', { class: 'raw' }, [el('summary', {}, t('steward.raw')), el('code', {}, JSON.stringify(e.detail, null, 1))]),
      ]),
    ]));
  }
  table.append(rows);
  body.append(table);
  if (page.entries.length === 100) {
    const more = el('button', { type: 'button' }, t('steward.older'));
    more.addEventListener('click', async () => {
      more.remove();
      await auditPage(body, page.entries[page.entries.length - 1].seq);
    });
    body.append(more);
  }
  if (!page.entries.length) body.append(el('p', { class: 'help' }, t('steward.none_yet')));
}

/** An entry as a sentence in the steward's language: who did what, and
 * what came of it; the raw record is one click away beside it. */
export function sentence(e) {
  const d = e.detail || {};
  const sym = (x) => (x && x.accounting === 'pure' ? 'ε' : 'ρ');
  switch (e.kind) {
    case 'request': {
      const who = t('steward.audit_who', { user: d.user || e.actor, role: t(`role.${d.role}`), project: d.project || '' });
      const what = d.query || d.sql || '';
      const key = `steward.audit_outcome_${d.outcome || 'pending_approval'}`;
      let outcome = t(key) === key ? d.outcome || '' : t(key, { sym: sym(d), loss: num(d.charged || 0, 3) });
      if (d.approved_by) outcome += t('steward.audit_approved_by', { steward: d.approved_by });
      const rule = d.rule ? t('steward.audit_rule', { n: d.rule }) : '';
      return t('steward.audit_request', { who, what, outcome, rule });
    }
    case 'decision':
      return t({ approve: 'steward.audit_approve', approve_first: 'steward.audit_approve_first' }[d.decision] || 'steward.audit_reject', {
        steward: e.actor,
        requester: d.requester || '',
        reason: d.reason || '',
      });
    case 'policy':
      return t('steward.audit_policy');
    case 'dataset':
      return t('steward.audit_dataset', { version: d.version || '' });
    case 'import':
      return t('steward.audit_import', { who: e.actor, version: d.version || '', files: Object.keys(d.files || {}).join(', ') });
    default:
      return summary(e);
  }
}

/** An entry's detail in one line: the fields people look for first. */
function summary(e) {
  const d = e.detail || {};
  const parts = [];
  for (const k of ['outcome', 'decision', 'user', 'requester', 'project', 'ticket', 'query', 'reason', 'version']) {
    if (d[k] != null) parts.push(`${k}: ${typeof d[k] === 'string' ? d[k] : JSON.stringify(d[k])}`);
  }
  return parts.length ? parts.join(' · ') : JSON.stringify(d).slice(0, 200);
}

async function showPolicy(view) {
  const p = await api('/api/policy');
  view.append(...policy.render(p));
}

boot().catch((e) => showError($('main'), e));

// A site's policy in plain words, as the node enforces it (defaults
// included): what questions may spend, the budgets, the contribution
// bounds, each role's settings and every rule in order.

import { t, num, upTo } from '/assets/i18n.js';
import * as words from '/assets/words.js';
import { el } from '/assets/ui.js';

/** A rule (at 0-based `index`) in words: "Rule 1: if …, it waits for a data steward." */
export function ruleText(r, index) {
  const conditions = [];
  if (r.role) conditions.push(t('policy.if_role', { role: t(`role.${r.role}`) }));
  if (r.projects) conditions.push(t('policy.if_projects', { projects: r.projects.join(', ') }));
  if (r.measures) conditions.push(t('policy.if_measures', { measures: r.measures.map((m) => words.measure({ kind: m, column: '…' })).join(', ') }));
  if (r.min_dimensions) conditions.push(t('policy.if_min_dimensions', { n: r.min_dimensions }));
  if (r.dimensions) conditions.push(t('policy.if_dimensions', { dimensions: r.dimensions.map(words.column).join(', ') }));
  if (r.loss_above != null) conditions.push(t('policy.if_loss_above', { loss: num(r.loss_above, 3) }));
  const when = conditions.length ? conditions.join(` ${t('words.and')} `) : t('policy.every_question');
  const action = t(`policy.action_${r.action}`);
  const reason = r.reason ? ` ${t('policy.reason', { reason: r.reason })}` : '';
  const eyes = r.approvals_required === 2 ? ` ${t('policy.four_eyes')}` : '';
  return `${t('policy.rule', { n: index + 1, when, action })}${eyes}${reason}`;
}

function rule(r, index) {
  return el('li', { 'data-rule': index + 1 }, ruleText(r, index));
}

/** A small number as a power of ten, e.g. 10⁻⁶ or 2,5 × 10⁻⁷ (in the
 * page's language). */
export function power(x) {
  const [mantissa, exponent] = x.toExponential().split('e');
  const sup = { '-': '⁻', '+': '', 0: '⁰', 1: '¹', 2: '²', 3: '³', 4: '⁴', 5: '⁵', 6: '⁶', 7: '⁷', 8: '⁸', 9: '⁹' };
  const tens = `10${[...exponent].map((c) => sup[c]).join('')}`;
  return Number(mantissa) === 1 ? tens : `${upTo(Number(mantissa), 3)} × ${tens}`;
}

/** The policy as a list of plain sentences. */
export function render(p) {
  const zcdp = p.accounting === 'zcdp';
  const sym = zcdp ? 'ρ' : 'ε';
  const range = zcdp ? p.zcdp.rho : p.epsilon;
  const budget = zcdp ? p.zcdp.budget : p.budget;
  const out = [el('h2', {}, t('policy.title'))];
  const basics = el('ul', { id: 'policy-basics' });
  basics.append(
    // Numbers as the page's language writes them; δ as a power of ten.
    el('li', {}, zcdp ? t('policy.zcdp', { delta: power(p.zcdp.delta) }) : t('policy.pure')),
    el('li', {}, t('policy.loss', { sym, min: upTo(range.min, 4), max: upTo(range.max, 4), default: upTo(range.default, 4) })),
    el('li', {}, t('policy.budgets', { sym, user: upTo(budget.user, 3), project: upTo(budget.project, 3), site: upTo(budget.site, 3), days: p.budget_period_days })),
    el('li', {}, t('policy.samples_bound', { n: p.max_samples_per_donor })),
    el('li', {}, t('policy.groups_bound', {
      n: p.max_groups_per_donor,
      list: Object.entries(p.groups_per_donor).map(([d, n]) => `${words.column(d)} ${n}`).join(', '),
    })),
    el('li', {}, t('policy.max_dimensions', { n: p.max_dimensions })),
    el('li', {}, t('policy.expiry', { days: p.approval_expiry_days })),
  );
  if (p.round_to > 1) basics.append(el('li', {}, t('policy.round_to', { n: p.round_to })));
  out.push(basics);
  out.push(el('h3', {}, t('policy.roles')));
  const roles = el('ul', { id: 'policy-roles' });
  for (const [role, r] of Object.entries(p.roles)) {
    const parts = [];
    if (r.denied) parts.push(t('policy.role_denied'));
    if (r.force_filter) parts.push(t('policy.role_filter', { filter: r.force_filter }));
    if (r.max_loss != null) parts.push(t('policy.role_max_loss', { sym, loss: upTo(r.max_loss, 4) }));
    if (!parts.length) parts.push(t('policy.role_nothing'));
    roles.append(el('li', {}, `${t(`role.${role}`)}: ${parts.join('; ')}`));
  }
  out.push(roles);
  out.push(el('h3', {}, t('policy.rules')));
  if (!p.rules.length) {
    out.push(el('p', {}, t('policy.no_rules')));
  } else {
    out.push(el('ol', { id: 'policy-rules' }, p.rules.map(rule)));
    out.push(el('p', { class: 'help' }, t('policy.first_match')));
  }
  return out;
}

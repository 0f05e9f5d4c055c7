// End-to-end tests of bonebank's pages in a real Chromium, as people use
// them: a researcher and an industry partner at the coordinator, data
// stewards at their nodes. Started by tests/tests/integration/browser.rs,
// which runs a network on loopback and passes its addresses in
// BONEBANK_E2E (JSON: coordinator, stewards {site: url}, screenshots).
// `node run.mjs main` runs everything up to the audit check;
// `node run.mjs tampered` checks the audit page after the test changed the
// log behind the node's back. Exits non-zero on the first failure.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

const env = JSON.parse(process.env.BONEBANK_E2E);
const phase = process.argv[2];
const STEWARD = env.stewards;
let browser;

async function context() {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 900 }, acceptDownloads: true });
  ctx.setDefaultTimeout(20_000);
  return ctx;
}

/** A page that fails the test on any script error. */
async function page(ctx) {
  const p = await ctx.newPage();
  p.on('pageerror', (e) => {
    throw new Error(`script error on ${p.url()}: ${e.message}`);
  });
  return p;
}

/** Signs in at a bonebank page through the development provider. */
async function signIn(p, url, user) {
  await p.goto(url);
  await p.click('#sign-in');
  await p.click(`button[value="${user}"]`);
}

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

const VALUE = /^\d[\d,.]*\*? \(\d[\d,.]*–\d[\d,.]*\)$/;
/** A day as the English pages write it (en-GB): "7 December 2026". */
const DAY = '\\d{1,2} [A-Z][a-z]+ \\d{4}';

const AXE = await readFile(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');

/** axe-core's violations of any impact on the page as it is now: none
 * allowed. The script goes in through the browser's debugger, as the
 * pages' content security policy admits no script from elsewhere. */
async function accessible(p, where) {
  if (!(await p.evaluate(() => Boolean(window.axe)))) await p.evaluate(AXE);
  const violations = await p.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  });
  assert.deepEqual(violations, [], `${where}: axe-core found\n${violations.join('\n')}`);
}

/** Adds the first thing the criteria search finds for `text`. */
async function find(p, text, pick = 'button') {
  await p.fill('#criteria-search', text);
  await p.waitForSelector(`#criteria-results ${pick}`);
  await p.click(`#criteria-results ${pick}`);
}

async function texts(p, selector) {
  return p.$$eval(selector, (els) => els.map((e) => e.textContent.trim()));
}

async function main() {
  const researcher = await context();
  const alice = await page(researcher);

  await step('alice signs in and builds the example question from the catalogue', async () => {
    await signIn(alice, env.coordinator, 'alice');
    await alice.waitForSelector('#criteria-search');
    // The tree is folded: one search finds values and criteria.
    assert.ok(!(await alice.isVisible('#crit-sex')), 'criteria folded until opened');
    await find(alice, 'female');
    await find(alice, 'age at');
    assert.ok(await alice.isVisible('#min-age_at_sampling'), 'the search opens a range criterion');
    assert.equal(await alice.evaluate(() => document.activeElement.id), 'min-age_at_sampling');
    await alice.fill('#min-age_at_sampling', '50');
    await alice.fill('#max-age_at_sampling', '70');
    await alice.click('#add-age_at_sampling');
    await alice.fill('#diagnosis-search', 'S72');
    await alice.click('#diagnosis-results li[data-code="S72"] .add-prefix');
    await alice.check('#by-sample_type');
    const chips = await texts(alice, '#groups-include .chip');
    assert.equal(chips.length, 3, chips.join(' | '));
    assert.match(chips[0], /sex: female/);
    assert.match(chips[1], /age at sampling: 50–70/);
    assert.match(chips[2], /diagnosis: S72\*/);
    await alice.click('#sql-box summary');
    await alice.waitForFunction(() => document.getElementById('sql').value.includes('GROUP BY'));
    const sql = await alice.inputValue('#sql');
    for (const part of ["sex = 'Female'", 'age_at_sampling BETWEEN 50 AND 70', "diagnosis LIKE 'S72%'", 'GROUP BY sample_type']) {
      assert.ok(sql.includes(part), `${part} in ${sql}`);
    }
    const words = await alice.textContent('#question-words');
    assert.match(words, /female/);
  });

  await step('alice sees each site\u2019s budget and the cost of the question before asking', async () => {
    await alice.waitForSelector('#cost-table tbody tr');
    const rows = await texts(alice, '#cost-table tbody tr');
    assert.equal(rows.length, 3);
    for (const r of rows) assert.match(r, /ρ 0\.023/);
    // The example question's age range cuts the catalogue's bands: fresh, and why.
    for (const r of rows) assert.match(r, /asked fresh: the age range cuts the catalogue.s age bands/, r);
    // In questions: about 20 like this at the default ρ 0.46 a month.
    for (const r of rows) assert.match(r, /about 20 fresh questions like this left at (DE-LUE|DK-ODE|DK-NAE)/);
    // Finer costs more and narrows the ±; back to standard before asking.
    // The donors' ± (a donor count's noise alone: it halves at 4× the loss).
    const donorsColumn = await alice.$$eval('#cost-table thead th', (ths) => ths.findIndex((th) => /^donors/.test(th.textContent)) + 1);
    assert.ok(donorsColumn > 0);
    const pm = async () => Number((await alice.textContent(`#cost-table tbody tr[data-site="DE-LUE"] > :nth-child(${donorsColumn})`)).replace(/[±,]/g, ''));
    // The table of the question as it is now (not one drawn before its
    // breakdown was added): past the preview's debounce and its requests.
    await alice.waitForTimeout(400);
    await alice.waitForLoadState('networkidle');
    const standard = await pm();
    await alice.selectOption('#precision', '4');
    await alice.waitForFunction(() => /ρ 0\.092/.test(document.querySelector('#cost-table tbody tr[data-site="DE-LUE"]')?.textContent || ''));
    const finest = await pm();
    assert.ok(Math.abs(finest / standard - 0.5) < 0.05, `donors ± ${finest} at 4× the cost, ± ${standard} at the default`);
    assert.match(await alice.textContent('#cost-table tbody tr[data-site="DE-LUE"]'), /about 5 fresh questions like this left/);
    await alice.selectOption('#precision', '1');
    await alice.waitForFunction(() => /ρ 0\.023/.test(document.querySelector('#cost-table tbody tr[data-site="DE-LUE"]')?.textContent || ''));
  });

  await step('alice asks and reads per-site values with 95% intervals', async () => {
    await alice.click('#ask');
    await alice.waitForSelector('#answer-sentence');
    // The keyboard (and a screen reader) is taken to the answer.
    await alice.waitForFunction(() => document.activeElement?.id === 'answer-title');
    const statuses = await alice.$$eval('#site-status tbody tr', (rs) => rs.map((r) => r.dataset.status));
    assert.deepEqual(statuses, ['answered', 'answered', 'answered']);
    for (const site of ['DE-LUE', 'DK-ODE', 'DK-NAE', 'total']) {
      const cells = await texts(alice, `table.values[data-measure="donors"] td[data-site="${site}"]`);
      assert.equal(cells.length, 19, `${site}: one value per sample type`);
      for (const c of cells) assert.match(c, VALUE, `${site}: ${c}`);
    }
    const bars = await alice.$$eval('svg.chart rect.bar', (b) => b.length);
    const whiskers = await alice.$$eval('svg.chart line.whisker', (w) => w.length);
    assert.ok(bars > 0 && whiskers === 3 * bars, `${bars} bars, ${whiskers} whisker lines`);
    const sentence = await alice.textContent('#answer-sentence');
    assert.match(sentence, /3 of 3 sites answered/);
    assert.match(sentence, /charged ρ 0\.023/);
    assert.match(alice.url(), /#q=[^&]+&a=\d+/);
    // Where the sites' numbers do not add up to the total, the table says
    // why, right under it; where they do, it says nothing.
    const unequal = await alice.$$eval('table.values[data-measure="donors"] tbody tr', (rows) => rows.some((r) => {
      const first = (td) => Number(td.textContent.split(' ')[0].replace(/[*,]/g, ''));
      const sites = [...r.querySelectorAll('td[data-site]:not([data-site="total"])')].map(first);
      const total = first(r.querySelector('td[data-site="total"]'));
      return sites.reduce((a, b) => a + b, 0) !== total;
    }));
    const note = await alice.$('table.values[data-measure="donors"] >> xpath=ancestor::div[contains(@class, "values-box")]//p[contains(@class, "sum-note")]');
    assert.equal(Boolean(note), unequal, 'the note is there exactly where the numbers do not add up');
    await accessible(alice, 'the researchers\u2019 app with an answer');
    if (env.screenshots) {
      // The answer's top: the sentence, the sites, the donors' charts.
      const box = await alice.evaluate(() => {
        const r = document.getElementById('answer').getBoundingClientRect();
        return { x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: Math.min(r.height, 1250) };
      });
      await alice.screenshot({ path: `${env.screenshots}/answer.png`, fullPage: true, clip: box });
    }
  });

  await step('the answer exports as CSV and JSON', async () => {
    const [csv] = await Promise.all([alice.waitForEvent('download'), alice.click('#export-csv')]);
    const text = await readFile(await csv.path(), 'utf8');
    assert.match(text.split('\n')[0], /^site,status,sample_type,samples,samples_low,samples_high,donors,donors_low,donors_high,ruled_out_by_question$/);
    assert.equal(text.trim().split('\n').length, 1 + 3 * 19 + 19);
    const [json] = await Promise.all([alice.waitForEvent('download'), alice.click('#export-json')]);
    const answer = JSON.parse(await readFile(await json.path(), 'utf8'));
    assert.equal(answer.sites.length, 3);
  });

  await step('the answer becomes a sample request for the BBMRI-ERIC Negotiator', async () => {
    // This network's coordinator has no Negotiator to send to: download only.
    assert.equal(await alice.$('#negotiator-send'), null);
    const [file] = await Promise.all([alice.waitForEvent('download'), alice.click('#negotiator-download')]);
    const request = JSON.parse(await readFile(await file.path(), 'utf8'));
    assert.match(request.url, /\/#a=\d+$/);
    assert.match(request.humanReadable, /SELECT/);
    assert.deepEqual(request.resources.map((r) => r.name), ['DE-LUE', 'DK-ODE', 'DK-NAE']);
    assert.match(request.resources[0].id, /^bbmri-eric:ID:DE_LUE_DEMO:collection:/);
  });

  await step('the address brings the question and its answer back', async () => {
    const shared = await page(researcher);
    await shared.goto(alice.url());
    await shared.waitForSelector('#answer-sentence');
    const chips = await texts(shared, '#groups-include .chip');
    assert.equal(chips.length, 3);
    assert.ok(await shared.isChecked('#by-sample_type'));
    await shared.close();
  });

  let sharedLink = null;
  await step('a colleague who must sign in first still gets the shared question', async () => {
    const link = alice.url();
    const colleague = await page(await context());
    await colleague.goto(link);
    await colleague.click('#sign-in');
    await colleague.click('button[value="ingrid"]');
    await colleague.waitForSelector('#groups-include .chip');
    const chips = await texts(colleague, '#groups-include .chip');
    assert.equal(chips.length, 3, chips.join(' | '));
    assert.match(colleague.url(), /#q=/);
    // alice's answer is not ingrid's: she gets the question, ready to ask.
    await colleague.waitForSelector('#not-yours');
    assert.match(await colleague.textContent('#not-yours'), /someone else’s history/);
    sharedLink = link;
    // The session ends mid-question: a sign-in button, and the question
    // comes back after it.
    await colleague.context().clearCookies();
    await colleague.check('#by-sex');
    await colleague.waitForSelector('#sign-in-again');
    assert.match(await colleague.textContent('#cost'), /Your session has ended; your question is kept/);
    const before = colleague.url();
    await colleague.click('#sign-in-again');
    await colleague.click('button[value="ingrid"]');
    await colleague.waitForSelector('#groups-include .chip');
    assert.equal(new URL(colleague.url()).hash, new URL(before).hash);
    assert.ok(await colleague.isChecked('#by-sex'));
    await colleague.close();
  });

  await step('alice builds OR and exclusion groups', async () => {
    // Group 1: women; OR group 2: serum; and NOT whole blood.
    while (await alice.$('#groups-include .chip .remove')) await alice.click('#groups-include .chip .remove');
    await find(alice, 'female');
    await alice.click('#new-include');
    await find(alice, 'serum');
    await alice.click('#new-exclude');
    await find(alice, 'whole blood');
    const include = await alice.$$eval('#groups-include .group', (gs) => gs.map((g) => [...g.querySelectorAll('.chip')].map((c) => c.dataset.column)));
    assert.deepEqual(include, [['sex'], ['sample_type']]);
    assert.deepEqual(await texts(alice, '#groups-exclude .chip'), [await alice.textContent('#groups-exclude .chip')]);
    assert.match(await alice.textContent('#groups-exclude .chip'), /sample type: whole blood/);
    assert.match(await alice.textContent('#question-words'), /\(sex is female\) or \(sample type is serum\)|sex is female or sample type is serum/);
    assert.match(await alice.textContent('#question-words'), /sample type is not whole blood/);
    if (!(await alice.isVisible('#sql'))) await alice.click('#sql-box summary');
    await alice.waitForFunction(() => /NOT/.test(document.getElementById('sql').value));
    const sql = await alice.inputValue('#sql');
    assert.match(sql, /\((sex = 'Female' OR sample_type = 'Serum'|sample_type = 'Serum' OR sex = 'Female')\) AND NOT/, sql);
    assert.match(sql, /NOT \(?sample_type = 'WholeBlood'/, sql);
    // The address holds the groups: a reload brings them back.
    await alice.reload();
    await alice.waitForSelector('#groups-exclude .chip');
    assert.equal((await texts(alice, '#groups-include .chip')).length, 2);
    // Removing the exclusion group leaves the OR groups.
    await alice.click('#groups-exclude .group button.link');
    await alice.waitForFunction(() => !document.querySelector('#groups-exclude .chip'));
    assert.equal((await texts(alice, '#groups-include .chip')).length, 2);    if (!(await alice.isVisible('#sql'))) await alice.click('#sql-box summary');
  });

  await step('the example question is built from the keyboard alone, in a few key presses per criterion', async () => {
    const p = await page(researcher);
    await p.goto(env.coordinator);
    await p.waitForSelector('#criteria-search');
    // The skip link comes first and goes to the question.
    await p.keyboard.press('Tab');
    assert.equal(await p.evaluate(() => document.activeElement.id), 'skip');
    await p.keyboard.press('Enter');
    assert.equal(await p.evaluate(() => document.activeElement.id), 'question');
    await p.evaluate(() => document.activeElement.blur());
    await p.evaluate(() => window.scrollTo(0, 0));
    await p.reload();
    await p.waitForSelector('#criteria-search');
    let presses = 0;
    const press = async (key) => { presses += 1; await p.keyboard.press(key); };
    const type = async (text) => { presses += text.length; await p.keyboard.type(text); };
    const results = () => p.waitForSelector('#criteria-results button');
    // Into the search: Tab past the skip link, the language and sign-out.
    while ((await p.evaluate(() => document.activeElement.id)) !== 'criteria-search') {
      await press('Tab');
      assert.ok(presses < 10, 'the search is near the top of the page');
    }
    await type('female'); await results(); await press('Enter');
    await press('Control+A'); await type('age at'); await results(); await press('Enter');
    await type('50'); await press('Tab'); await type('70'); await press('Enter');
    await press('Control+A'); await type('S72');
    await p.waitForSelector('#criteria-results li.found-code[data-code="S72"]');
    await press('Enter');
    await press('Control+A'); await type('sample type'); await results(); await press('Enter');
    const chips = await texts(p, '#groups-include .chip');
    assert.deepEqual(chips.map((c) => c.replace(/\s*×$/, '')), ['sex: female', 'age at sampling: 50–70', 'diagnosis: S72*']);
    assert.ok(await p.isChecked('#by-sample_type'));
    console.log(`     the example question took ${presses} key presses (284 before the criteria search)`);
    // Words find a diagnosis as well: in German, and in everyday words.
    for (const [words, code] of [['Oberschenkel', 'S72'], ['hip fracture', 'S72.0'], ['lårben', 'S72']]) {
      await p.fill('#criteria-search', words);
      await p.waitForSelector(`#criteria-results li.found-code[data-code="${code}"]`);
    }
    assert.ok(presses <= 60, `${presses} key presses`);
    await p.close();
  });

  await step('SQL typed by hand becomes chips where it fits, and is kept as SQL where not', async () => {
    await alice.fill('#sql', "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sex = 'Male' AND age_at_sampling >= 60 GROUP BY age_band");
    await alice.click('#apply-sql');
    await alice.waitForFunction(() => [...document.querySelectorAll('#groups-include .chip')].some((c) => c.textContent.includes('≥ 60')));
    const chips = await texts(alice, '#groups-include .chip');
    assert.equal(chips.length, 2, chips.join(' | '));
    assert.match(chips.join(' '), /sex: male/);
    assert.ok(await alice.isChecked('#by-age_band'));
    assert.ok(!(await alice.isChecked('#measure-samples')));
    await alice.click('#sql-box summary').catch(() => {});
    if (!(await alice.isVisible('#sql'))) await alice.click('#sql-box summary');
    await alice.fill('#sql', "SELECT COUNT(*) FROM samples WHERE (sex = 'Male' OR age_at_sampling > 60) AND (diagnosis LIKE 'S72%' OR passage_number > 2)");
    await alice.click('#apply-sql');
    await alice.waitForSelector('#back-to-builder');
    const note = await alice.textContent('#sql-note');
    assert.match(note, /does not fit/);
  });

  await step('a link pasted into the open tab is followed', async () => {
    assert.ok(await alice.isVisible('#back-to-builder'), 'the typed SQL is kept as written');
    await alice.evaluate((h) => { window.location.hash = h; }, new URL(sharedLink).hash);
    await alice.waitForFunction(() => document.querySelectorAll('#groups-include .chip').length === 3);
    assert.ok(!(await alice.isVisible('#back-to-builder')), 'the link\u2019s question is the builder\u2019s again');
    assert.match(await alice.textContent('#question-words'), /female/);
  });

  await step('a question the catalogues answer shows live counts, and asking it charges nobody', async () => {
    if (!(await alice.isVisible('#sql'))) await alice.click('#sql-box summary');
    await alice.fill('#sql', "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 60 AND 69 AND diagnosis LIKE 'S72%' GROUP BY sample_type");
    await alice.click('#apply-sql');
    // The estimate comes with the cost, as the question changes.
    await alice.waitForSelector('#estimate table.estimate-values[data-measure="donors"] td[data-site="DE-LUE"]');
    const from = await alice.textContent('#estimate-from');
    for (const site of ['DE-LUE', 'DK-ODE', 'DK-NAE']) {
      assert.match(from, new RegExp(`${site} from its catalogue of ${DAY}`), from);
    }
    assert.match(from, /Free: nobody’s budget is charged/);
    for (const site of ['DE-LUE', 'DK-ODE', 'DK-NAE', 'total']) {
      const cells = await texts(alice, `#estimate table.estimate-values[data-measure="donors"] td[data-site="${site}"]`);
      assert.equal(cells.length, 19, `${site}: one estimate per sample type`);
      for (const c of cells) assert.match(c, VALUE, `${site}: ${c}`);
    }
    const costs = await texts(alice, '#cost-table tbody tr');
    for (const r of costs) assert.match(r, /ρ 0\.000 — from the site’s catalogue, free/, r);
    await alice.click('#ask');
    await alice.waitForFunction(() => /from its catalogue of/.test(document.querySelector('#site-status')?.textContent || ''));
    const details = await texts(alice, '#site-status tbody tr');
    assert.equal(details.length, 3);
    for (const d of details) assert.match(d, new RegExp(`answered.*from its catalogue of ${DAY}, free`), d);
    assert.doesNotMatch(await alice.textContent('#answer-sentence'), /charged/);
    // Nothing was spent: each site's budget left is what it was.
    await alice.waitForSelector('#cost-table tbody tr');
    const after = await texts(alice, '#cost-table tbody tr');
    assert.deepEqual(after.map((r) => r.split('ρ 0.000')[0]), costs.map((r) => r.split('ρ 0.000')[0]));
  });

  await step('cells the question rules out say so, and an answer without a breakdown has its chart', async () => {
    if (!(await alice.isVisible('#sql'))) await alice.click('#sql-box summary');
    await alice.fill('#sql', "SELECT sample_type, COUNT(DISTINCT donor_id) FROM samples WHERE sample_type IN ('Serum', 'Plasma') GROUP BY sample_type");
    await alice.click('#apply-sql');
    await alice.waitForSelector('#estimate table.estimate-values td.ruled-out');
    await alice.click('#ask');
    await alice.waitForSelector('#answer table.values td.ruled-out');
    const rows = await alice.$$eval('#answer table.values[data-measure="donors"] tbody tr', (rs) => rs.map((r) => [r.querySelector('th').textContent, r.classList.contains('ruled-out-row')]));
    assert.equal(rows.length, 19);
    for (const [type, out] of rows) assert.equal(out, !['serum', 'plasma'].includes(type), `${type}`);
    assert.match(await alice.textContent('#ruled-out-note'), /cannot hold any sample the question counts/);
    // The chart leaves them out: two sample types, a bar per site each.
    assert.equal(await alice.$$eval('#answer section.measure svg.chart:nth-of-type(1) rect.bar', (b) => b.length) >= 2, true);
    if (!(await alice.isVisible('#sql'))) await alice.click('#sql-box summary');
    await alice.fill('#sql', "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sex = 'Female'");
    await alice.click('#apply-sql');
    await alice.waitForFunction(() => document.querySelectorAll('#groups-include .chip').length === 1);
    await alice.click('#ask');
    await alice.waitForFunction(() => /3 of 3 sites answered/.test(document.getElementById('answer-sentence')?.textContent || '') && !document.querySelector('#answer td.ruled-out'));
    // One chart: a bar for each site and the total.
    assert.equal(await alice.$$eval('#answer svg.chart', (c) => c.length), 1);
    assert.equal(await alice.$$eval('#answer svg.chart rect.bar', (b) => b.length), 4);
    assert.match(await alice.getAttribute('#answer svg.chart', 'aria-label'), /donors per site and in total/);
  });

  await step('the builder stops a question that cannot work before anything is sent', async () => {
    // The age criterion, opened in the tree.
    if (!(await alice.isVisible('#min-age_at_sampling'))) await alice.click('#open-age_at_sampling > summary');
    const chips = await texts(alice, '#groups-include .chip');
    const tries = [
      ['70', '50', /from 70 to 50: the first must not be larger/],
      ['50.5', '', /Whole numbers only/],
      ['-5', '200', /from 0 to 130/],
    ];
    for (const [lo, hi, why] of tries) {
      await alice.fill('#min-age_at_sampling', lo);
      await alice.fill('#max-age_at_sampling', hi);
      await alice.click('#add-age_at_sampling');
      assert.match(await alice.textContent('#range-error-age_at_sampling'), why);
      assert.ok(await alice.isVisible('#range-error-age_at_sampling'));
      assert.deepEqual(await texts(alice, '#groups-include .chip'), chips, 'nothing added');
    }
    // No measure: Ask waits, saying why; a measure again, and it may ask.
    for (const m of ['donors', 'samples']) {
      if (await alice.isChecked(`#measure-${m}`)) await alice.uncheck(`#measure-${m}`);
    }
    await alice.waitForFunction(() => document.getElementById('ask').disabled && document.getElementById('ask-fresh').disabled);
    assert.match(await alice.textContent('#ask-why'), /Choose donors or samples/);
    await alice.check('#measure-donors');
    await alice.waitForFunction(() => !document.getElementById('ask').disabled);
    assert.ok(!(await alice.isVisible('#ask-why')));
    // Three breakdowns where the sites allow two (the builder offers no
    // third; typed as SQL), and no catalogue table to answer them: every
    // site would refuse it, so it is not sent, and the reason is shown.
    if (!(await alice.isVisible('#sql'))) await alice.click('#sql-box summary');
    await alice.fill('#sql', 'SELECT sex, sampling_year, sample_type, COUNT(*) FROM samples GROUP BY sex, sampling_year, sample_type');
    await alice.click('#apply-sql');
    await alice.waitForFunction(() => document.getElementById('ask').disabled);
    assert.match(await alice.textContent('#ask-why'), /cannot be asked|No site would answer/);
    // The next change to the builder's question, which may be asked,
    // allows Ask again.
    if (await alice.isVisible('#back-to-builder')) await alice.click('#back-to-builder');
    for (const d of ['sex', 'sampling_year']) {
      if (await alice.isChecked(`#by-${d}`)) await alice.uncheck(`#by-${d}`);
    }
    await alice.waitForFunction(() => !document.getElementById('ask').disabled);
    await alice.fill('#min-age_at_sampling', '');
    await alice.fill('#max-age_at_sampling', '');
  });

  await step('alice switches to German and Danish', async () => {
    await alice.selectOption('#lang-switch', 'de');
    await alice.waitForFunction(() => document.documentElement.lang === 'de');
    assert.equal(await alice.textContent('#question h2'), 'Ihre Frage');
    // The answer keeps its heading, in the new language.
    assert.equal(await alice.textContent('#answer h2'), 'Antwort');
    assert.equal(await alice.textContent('#ask'), 'Standorte fragen');
    await alice.selectOption('#lang-switch', 'da');
    await alice.waitForFunction(() => document.documentElement.lang === 'da');
    assert.equal(await alice.textContent('#question h2'), 'Dit spørgsmål');
    await alice.waitForFunction(() => /Dine tidligere spørgsmål/.test(document.querySelector('#history h2')?.textContent || ''));
    await alice.selectOption('#lang-switch', 'en');
  });

  const partner = await context();
  const ingrid = await page(partner);
  await step('ingrid sees that her counts are restricted to commercial consent', async () => {
    await signIn(ingrid, env.coordinator, 'ingrid');
    await ingrid.waitForSelector('#role-notice').catch(async (e) => {
      // Say what the sites looked like to the app, should the notice not come.
      const sites = await ingrid.evaluate(() => fetch('/v1/sites').then((r) => r.text())).catch((f) => String(f));
      throw new Error(`${e.message}\n/v1/sites now: ${sites.slice(0, 2000)}`);
    });
    const notice = await ingrid.textContent('#role-notice');
    assert.match(notice, /consented to commercial use/);
    // In words, not as the SQL the sites add.
    for (const site of ['DE-LUE', 'DK-ODE', 'DK-NAE']) assert.ok(notice.includes(`${site}: only samples of donors who consented to commercial use`), notice);
    assert.ok(!notice.includes('consent_commercial'), notice);
  });

  let ticket;
  await step('ingrid asks; DK-ODE waits for a steward, the others answer', async () => {
    await find(ingrid, 'stem cells');
    await ingrid.check('#by-sex');
    // DK-ODE's steward decides: the app asks what the question is for,
    // and Ask waits for it.
    await ingrid.waitForSelector('#purpose');
    await ingrid.waitForFunction(() => document.getElementById('ask').disabled);
    assert.match(await ingrid.textContent('#ask-why'), /Say what the question is for: a data steward of DK-ODE decides/);
    await ingrid.fill('#purpose', 'Scoping a trial of MSC from femoral fractures');
    await ingrid.fill('#project-ref', 'EK 2026-114');
    await ingrid.waitForFunction(() => !document.getElementById('ask').disabled);
    await ingrid.click('#ask');
    await ingrid.waitForSelector('#answer-sentence');
    const statuses = await ingrid.$$eval('#site-status tbody tr', (rs) => Object.fromEntries(rs.map((r) => [r.dataset.site, r.dataset.status])));
    assert.deepEqual(statuses, { 'DE-LUE': 'answered', 'DK-ODE': 'waiting_for_approval', 'DK-NAE': 'answered' });
    assert.ok(await ingrid.isVisible('#look-again'));
    // What happens next, in words: no ticket hash, no API path.
    const waiting = await ingrid.textContent('#site-status tr[data-site="DK-ODE"]');
    assert.match(waiting, /A data steward of DK-ODE decides whether this question runs there/);
    assert.ok(!/\/v1\/tickets|[0-9a-f]{16}/.test(waiting), waiting);
  });

  await step('a researcher is refused at the stewards\u2019 pages', async () => {
    const ctx = await context();
    const p = await page(ctx);
    await signIn(p, STEWARD['DK-ODE'], 'alice');
    await p.waitForSelector('#refused');
    assert.match(await p.textContent('#refused'), /not a data steward/);
    assert.ok(await p.isHidden('#pages'));
    await ctx.close();
  });

  await step('a steward of DE-LUE can neither see nor decide DK-ODE\u2019s queue', async () => {
    const ctx = await context();
    const p = await page(ctx);
    await signIn(p, STEWARD['DK-ODE'], 'steward-de-lue');
    await p.waitForSelector('#refused');
    assert.match(await p.textContent('#refused'), /not of DK-ODE/);
    const status = await p.evaluate(async () => (await fetch('/api/approvals')).status);
    assert.equal(status, 401, 'no session at DK-ODE');
    await signIn(p, STEWARD['DE-LUE'], 'steward-de-lue');
    await p.waitForSelector('#queue-waiting', { state: 'attached' });
    assert.equal(await p.$$eval('[data-user="ingrid"]', (e) => e.length), 0, 'DE-LUE has no request of ingrid');
    await ctx.close();
  });

  const stewardCtx = await context();
  const steward = await page(stewardCtx);
  await step('a steward of DK-ODE signs in and sees ingrid\u2019s waiting request', async () => {
    await signIn(steward, STEWARD['DK-ODE'], 'steward-dk-ode');
    await steward.waitForSelector('#queue-waiting [data-user="ingrid"]');
    const card = steward.locator('#queue-waiting [data-user="ingrid"]');
    ticket = await card.getAttribute('data-ticket');
    const text = await card.textContent();
    assert.match(text, /industry partner/);
    assert.match(text, /commercial-use consent: yes/);
    assert.match(text, /ρ 0\.023/);
    assert.match(text, /Expires.*in 1[34] days/s);
    assert.match(await card.locator('p.purpose').textContent(), /Purpose: Scoping a trial of MSC from femoral fractures \(EK 2026-114\)/);
    // Why it is here, in the rule's own words, and ingrid's record here.
    assert.match(await card.locator('dd.rule').textContent(), /^Rule 1: if the asking role is industry partner, it waits for a data steward/);
    assert.match(await card.locator('dd.record').textContent(), /0 questions answered, 0 approved, 0 rejected/);
    assert.match(await card.locator('code.sql').textContent(), /consent_commercial = true/);
    if (env.screenshots) await steward.screenshot({ path: `${env.screenshots}/queue.png` });
  });

  await step('a forged form post without the CSRF token is refused', async () => {
    // Another page on the same host (so the browser sends the session
    // cookie along, as SameSite=Lax allows): the identity provider's.
    const forger = await page(stewardCtx);
    await forger.goto(`${env.forger}/.well-known/openid-configuration`);
    const response = forger.waitForResponse((r) => r.url().includes(`/api/approvals/${ticket}`));
    await forger.evaluate(({ action }) => {
      const form = document.createElement('form');
      form.method = 'POST';
      form.action = action;
      const field = document.createElement('input');
      field.name = 'decision';
      field.value = 'approve';
      form.append(field);
      document.body.append(form);
      form.submit();
    }, { action: `${STEWARD['DK-ODE']}api/approvals/${ticket}` });
    const r = await response;
    assert.equal(r.status(), 403);
    assert.match(await r.text(), /CSRF/);
    const fetched = await steward.evaluate(async (t) => {
      const r = await fetch(`/api/approvals/${t}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"decision": "approve"}' });
      return r.status;
    }, ticket);
    assert.equal(fetched, 403, 'a script without the token is refused too');
    await steward.reload();
    await steward.waitForSelector(`#queue-waiting [data-ticket="${ticket}"]`);
    await forger.close();
  });

  await step('the steward approves, and ingrid\u2019s next look fills in DK-ODE', async () => {
    await steward.fill(`#reason-${ticket}`, 'Approved for the scoping study; ask us before a sample request.');
    await steward.click(`#queue-waiting [data-ticket="${ticket}"] button.approve`);
    // Asked once more, with what approving means; Cancel keeps it waiting.
    const confirm = `#queue-waiting [data-ticket="${ticket}"] .confirm-box`;
    assert.match(await steward.textContent(confirm), /Approve ingrid’s question\? It releases numbers to ingrid and charges ρ 0\.023 to ingrid’s budget\./);
    await steward.click(`${confirm} button.cancel`);
    assert.equal(await steward.$(confirm), null);
    await steward.click(`#queue-waiting [data-ticket="${ticket}"] button.approve`);
    await steward.click(`${confirm} button.confirm-approve`);
    await steward.waitForSelector(`#queue-decided [data-ticket="${ticket}"][data-state="approved"]`);
    const done = await steward.textContent(`#queue-decided [data-ticket="${ticket}"]`);
    assert.match(done, /steward-dk-ode/);
    // No reload and no button: the open page looks again by itself.
    await ingrid.waitForSelector('#site-status tr[data-site="DK-ODE"][data-status="answered"]', { timeout: 30_000 });
    // It says what happened: released at the approval, charged to her then.
    assert.match(
      await ingrid.textContent('#site-status tr[data-site="DK-ODE"]'),
      /released when a data steward approved: ρ 0\.023 charged to you then/,
    );
    assert.doesNotMatch(await ingrid.textContent('#site-status tr[data-site="DK-ODE"]'), /released before/);
    // With the steward's note.
    assert.match(await ingrid.textContent('#site-status tr[data-site="DK-ODE"]'), /The data steward's note: Approved for the scoping study; ask us before a sample request\./);
    const cells = await texts(ingrid, 'table.values[data-measure="donors"] td[data-site="DK-ODE"]');
    assert.equal(cells.length, 5, 'one value per sex');
    for (const c of cells) assert.match(c, VALUE);
  });

  await step('the steward reads the budget, the audit log and the policy, in three languages', async () => {
    await steward.click('#tab-budget');
    await steward.waitForSelector('#budget-users');
    assert.match(await steward.textContent('#budget-users'), /ingrid/);
    // Alice's question and ingrid's (ρ 0.023 each), and the version's
    // sample bounds, measured once with ρ 1 and charged to the site alone.
    assert.match(await steward.textContent('#site-total'), /ρ 1\.046 of ρ 48/, 'alice\u2019s question, ingrid\u2019s and the sample bounds');
    assert.match(await steward.textContent('#budget-users'), /sample bounds/);
    // The year's bound and the published catalogue, in plain words: the
    // catalogue's ρ 2 and the year's catalogues and fresh questions.
    assert.match(await steward.textContent('#site-yearly'), /yearly bound ρ [\d.,]+ \(catalogues ρ 10, fresh questions ρ [\d.,]+\): at most \(ε [\d.,]+, δ/);
    assert.match(await steward.textContent('#site-catalogue'), /measured on \d{4}-\d\d-\d\d from dataset version \S+, ρ 5 \(ε [\d.,]+\) charged once; 41 tables/);
    assert.match(await steward.textContent('#site-catalogue-consented'), /^16 of those tables count only the donors who consented to commercial use \(ρ 1 of the catalogue’s loss\)/);
    await steward.click('#tab-audit');
    await steward.waitForSelector('#chain-status');
    assert.equal(await steward.getAttribute('#chain-status', 'data-intact'), 'true');
    // In sentences, with the raw record one click away.
    assert.match(await steward.textContent('table.audit'), /steward-dk-ode approved ingrid's question\./);
    assert.match(await steward.textContent('table.audit'), /ingrid \(industry partner, [^)]*\) asked SELECT .*: waits for a data steward/);
    assert.ok(await steward.$('table.audit details.raw'));
    const csv = await steward.evaluate(async () => (await (await fetch('/api/audit/export.csv')).text()).split('\n')[0]);
    assert.equal(csv, 'seq,at,kind,actor,detail,prev,hash');
    await steward.selectOption('#audit-kind', 'decision');
    await steward.click('#audit-filter button');
    await steward.waitForFunction(() => document.querySelectorAll('table.audit tbody tr').length === 1);
    await steward.click('#tab-policy');
    await steward.waitForSelector('#policy-rules');
    assert.match(await steward.textContent('#policy-rules'), /Rule 1: if the asking role is industry partner, it waits for a data steward/);
    assert.match(await steward.textContent('#policy-basics'), /δ = 10⁻⁶/);
    await steward.selectOption('#lang-switch', 'de');
    await steward.waitForFunction(() => document.getElementById('tab-queue').textContent === 'Freigaben');
    // The policy's numbers as German writes them.
    await steward.waitForFunction(() => /0,023/.test(document.getElementById('policy-basics')?.textContent || ''));
    await steward.selectOption('#lang-switch', 'da');
    await steward.waitForFunction(() => document.getElementById('tab-queue').textContent === 'Godkendelser');
    await steward.selectOption('#lang-switch', 'en');
    const html = await steward.content();
    assert.doesNotMatch(html, /"value":/, 'no released value on a steward page');
  });

  await step('every steward page passes axe-core, signed in and out', async () => {
    const shown = { queue: '#queue-decided', budget: '#budget-users', audit: '#chain-status', policy: '#policy-rules', report: '#report-open' };
    for (const [tab, selector] of Object.entries(shown)) {
      await steward.click(`#tab-${tab}`);
      await steward.waitForSelector(selector, { state: 'attached' });
      await steward.waitForLoadState('networkidle');
      await accessible(steward, `the stewards' ${tab} page`);
    }
    // The yearly report: the HTML opens in its own tab and passes too,
    // and the PDF comes as a PDF named for the site and year.
    const year = String(new Date().getUTCFullYear());
    assert.equal(await steward.inputValue('#report-year'), year);
    const [report] = await Promise.all([steward.context().waitForEvent('page'), steward.click('#report-open')]);
    await report.waitForLoadState('load');
    assert.equal(await report.textContent('h1'), `Privacy report ${year}: DK-ODE`);
    assert.match(await report.textContent('body'), /Catalogue releases\s*1\s*5/);
    assert.match(await report.textContent('body'), /steward-dk-ode\s*1/);
    await accessible(report, 'the yearly report');
    await report.close();
    const pdf = await steward.evaluate(async (href) => {
      const r = await fetch(href);
      const bytes = new Uint8Array(await r.arrayBuffer());
      return { type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), magic: String.fromCharCode(...bytes.slice(0, 5)) };
    }, await steward.getAttribute('#report-pdf', 'href'));
    assert.deepEqual(pdf, { type: 'application/pdf', disposition: `attachment; filename="privacy-report-DK-ODE-${year}.pdf"`, magic: '%PDF-' });
    await steward.selectOption('#lang-switch', 'da');
    await steward.waitForFunction(() => /lang=da/.test(document.getElementById('report-open').href));
    assert.equal(await steward.textContent('#report-open'), '\u00c5bn rapporten');
    await steward.selectOption('#lang-switch', 'en');
    const ctx = await context();
    const out = await page(ctx);
    await out.goto(STEWARD['DK-ODE']);
    await out.waitForSelector('#sign-in');
    await accessible(out, 'the stewards\u2019 sign-in page');
    await out.goto(env.coordinator);
    await out.waitForSelector('#sign-in');
    assert.ok(await out.isHidden('#sign-out'), 'no Sign out when signed out');
    assert.ok(await out.isHidden('#app'), 'no empty app panels when signed out');
    await accessible(out, 'the researchers\u2019 sign-in page');
    await ctx.close();
  });

  await step('on a 390 px phone the app does not scroll sideways and the criteria do not cover the answer', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    phone.setDefaultTimeout(20_000);
    const p = await page(phone);
    await signIn(p, sharedLink, 'alice');
    await p.waitForSelector('#answer-sentence');
    const widths = await p.evaluate(() => ({ page: document.documentElement.scrollWidth, view: window.innerWidth }));
    assert.ok(widths.page <= widths.view, `the page is ${widths.page} px wide in a ${widths.view} px view`);
    assert.equal(await p.evaluate(() => getComputedStyle(document.getElementById('catalogue')).position), 'static');
    await find(p, 'male');
    await p.waitForSelector('#cost-table tbody tr');
    const after = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(after <= widths.view, `${after} px with the cost table`);
    await accessible(p, 'the app on a phone');
    await phone.close();
  });

  await step('the first load is small and quick: at most 100 KB, the builder within 500 ms', async () => {
    const ctx = await context();
    const p = await page(ctx);
    await signIn(p, env.coordinator, 'alice');
    await p.waitForSelector('#criteria-search');
    // Signed in, nothing cached: the first visit of the day.
    const cdp = await ctx.newCDPSession(p);
    await cdp.send('Network.enable');
    await cdp.send('Network.clearBrowserCache');
    let bytes = 0;
    cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; });
    const started = Date.now();
    await p.goto(env.coordinator, { waitUntil: 'commit' });
    await p.waitForSelector('#criteria-search');
    const builderMs = Date.now() - started;
    await p.waitForLoadState('networkidle');
    const cold = bytes;
    // Again, with the files cached: each is checked by its tag, not sent.
    bytes = 0;
    await p.reload({ waitUntil: 'networkidle' });
    const warm = bytes;
    const history = await p.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.endsWith('/v1/history')).length);
    console.log(`     first load ${Math.round(cold / 1024)} KB, builder after ${builderMs} ms; a reload ${Math.round(warm / 1024)} KB; history fetched ${history} time(s)`);
    assert.equal(history, 1, 'the history is fetched once per load');
    assert.ok(cold <= 100 * 1024, `${cold} bytes on the first load`);
    assert.ok(warm < cold, 'cached files are not sent again');
    assert.ok(builderMs <= 500, `the builder after ${builderMs} ms`);
    // A language switch draws the history again without fetching it.
    await p.selectOption('#lang-switch', 'de');
    await p.waitForFunction(() => /Ihre früheren Fragen/.test(document.querySelector('#history h2')?.textContent || ''));
    assert.equal(await p.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.endsWith('/v1/history')).length), 1);
    await p.selectOption('#lang-switch', 'en');
    await ctx.close();
  });
}

async function tampered() {
  const ctx = await context();
  const p = await page(ctx);
  await step('a log changed behind the node\u2019s back shows as broken on the audit page', async () => {
    await signIn(p, STEWARD['DK-ODE'], 'steward-dk-ode');
    await p.waitForSelector('#queue-decided', { state: 'attached' });
    await p.click('#tab-audit');
    await p.waitForSelector('#chain-status');
    assert.equal(await p.getAttribute('#chain-status', 'data-intact'), 'false');
    assert.match(await p.textContent('#chain-status'), /BROKEN: audit log broken at entry \d+/);
  });
}

browser = await chromium.launch({
  executablePath: env.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--no-first-run'],
});
try {
  if (phase === 'main') await main();
  else if (phase === 'tampered') await tampered();
  else throw new Error(`unknown phase ${phase}`);
} finally {
  await browser.close();
}

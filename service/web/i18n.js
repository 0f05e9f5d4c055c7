// The language of every page: one catalogue per language (i18n/en.json,
// de.json, da.json), chosen from the browser's languages unless the person
// picked one, which is remembered in this browser.

export const LANGUAGES = ['en', 'de', 'da'];
const STORE_KEY = 'bonebank.lang';

let strings = {};
let current = 'en';

/** The language to start with: the one picked before, or the browser's. */
export function preferred() {
  const picked = localStorage.getItem(STORE_KEY);
  if (LANGUAGES.includes(picked)) return picked;
  for (const tag of navigator.languages || [navigator.language || 'en']) {
    const base = tag.toLowerCase().split('-')[0];
    if (LANGUAGES.includes(base)) return base;
    if (base === 'nb' || base === 'no' || base === 'sv') return 'da';
  }
  return 'en';
}

/** Loads a language's catalogue and makes it the current one. */
export async function use(lang) {
  const response = await fetch(`/assets/i18n/${lang}.json`);
  if (!response.ok) throw new Error(`no catalogue for ${lang}`);
  strings = await response.json();
  current = lang;
  document.documentElement.lang = lang;
}

/** Picks a language for good (this browser) and loads it. */
export async function pick(lang) {
  localStorage.setItem(STORE_KEY, lang);
  await use(lang);
}

export function lang() {
  return current;
}

/**
 * The text of `key` in the current language, with `{name}` placeholders
 * filled from `vars`. A missing key shows as itself, so that it is seen.
 */
export function t(key, vars = {}) {
  const text = strings[key];
  if (text === undefined) return key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Makes `table` the catalogue of `lang` without fetching it (for tests
 * that run outside a browser). */
export function set(lang, table) {
  strings = table;
  current = lang;
}

/** The locale numbers and dates are written in: British English, German,
 * Danish. */
export function locale() {
  return { en: 'en-GB', de: 'de-DE', da: 'da-DK' }[current] || 'en-GB';
}

/** A moment (an RFC 3339 string or a Date) as the current language writes
 * it, e.g. "7 Dec 2026, 14:02" or "07.12.2026, 14:02". */
export function when(at) {
  return new Date(at).toLocaleString(locale(), { dateStyle: 'medium', timeStyle: 'short' });
}

/** A day (YYYY-MM-DD, or a Date) as the current language writes it, e.g.
 * "7 December 2026", "7. Dezember 2026", "7. december 2026". */
export function day(date) {
  const d = typeof date === 'string' ? new Date(`${date.slice(0, 10)}T12:00:00Z`) : date;
  return d.toLocaleDateString(locale(), { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
}

/** Numbers as the current language writes them. */
export function num(value, digits = 0) {
  return Number(value).toLocaleString(locale(), {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** Numbers as the current language writes them, with at most `digits`
 * decimals (none where they are zeros). */
export function upTo(value, digits) {
  return Number(value).toLocaleString(locale(), { maximumFractionDigits: digits });
}

/** Fills every element under `root` that names a key: its text
 * (`data-i18n`) or attributes (`data-i18n-attr`, a list of attr:key pairs). */
export function apply(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(',')) {
      const [attr, key] = pair.split(':');
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
}

/** A labelled language switch; `changed` is called after a new language is loaded. */
export function switcher(changed) {
  const label = document.createElement('label');
  label.className = 'lang';
  const text = document.createElement('span');
  text.dataset.i18n = 'lang.label';
  text.className = 'visually-hidden';
  const select = document.createElement('select');
  select.id = 'lang-switch';
  for (const code of LANGUAGES) {
    const option = document.createElement('option');
    option.value = code;
    option.textContent = { en: 'English', de: 'Deutsch', da: 'Dansk' }[code];
    option.lang = code;
    select.append(option);
  }
  select.value = current;
  select.addEventListener('change', async () => {
    await pick(select.value);
    changed();
  });
  label.append(text, select);
  return label;
}

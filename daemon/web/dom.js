// Small DOM helpers. Text always goes in as text nodes, never as HTML.
const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h('td', {class: 'x'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element (for the hand-drawn graphs). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Replace an element's children (arrays are flattened, text stays text). */
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmt(value, digits = 2, unit = '') {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  if (typeof value === 'number') return value.toFixed(digits) + unit;
  return String(value) + unit;
}

// The site's IANA time zone (the daemon's NIGHTOWL_TIMEZONE); null: the browser's own.
let siteZone = null;

/** Show times in the site's zone from now on (pages drawn later use it). */
export function setSiteZone(zone) {
  try {
    if (zone) new Intl.DateTimeFormat([], { timeZone: zone });
    siteZone = zone || null;
  } catch (e) {
    siteZone = null; // a zone this browser does not know: its own, labelled as such
  }
}

function zoned(d, options) {
  const zone = siteZone ? { timeZone: siteZone } : {};
  return d.toLocaleString([], { hour12: false, timeZoneName: 'short', ...zone, ...options });
}

function isUtc(d) {
  const name = zoned(d, { hour: '2-digit' });
  return /\b(UTC|GMT)$/.test(name);
}

/** A time of day labelled with its zone, then in UTC: "21:04:05 CET (20:04:05 UTC)". */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const utc = `${d.toISOString().slice(11, 19)} UTC`;
  if (isUtc(d)) return utc;
  return `${zoned(d, { hour: '2-digit', minute: '2-digit', second: '2-digit' })} (${utc})`;
}

/** A date and time labelled with its zone, then in UTC. */
export function dateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const utc = `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  if (isUtc(d)) return utc;
  const local = zoned(d, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
  return `${local} (${utc})`;
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || text}` }, text);
}

export function progressBar(fraction) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  return h('div', { class: 'progress', title: `${pct.toFixed(0)} %` },
    h('div', { style: `width: ${pct.toFixed(1)}%` }));
}

/** RA hours as "hh:mm:ss", Dec degrees as "±dd:mm:ss". */
export function sexagesimal(value, signed) {
  if (value === null || value === undefined) return '—';
  const sign = value < 0 ? '-' : signed ? '+' : '';
  let rest = Math.abs(value);
  const a = Math.floor(rest); rest = (rest - a) * 60;
  const b = Math.floor(rest); const c = (rest - b) * 60;
  const pad = (n) => String(n).padStart(2, '0');
  return `${sign}${pad(a)}:${pad(b)}:${c.toFixed(0).padStart(2, '0')}`;
}

/** Label and value pairs as a definition list; pairs whose value is undefined are left out. */
export function figures(pairs) {
  return h('dl', { class: 'figures' }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

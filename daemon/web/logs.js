// Logs: the event log filtered by level, source, text and time, and downloaded as CSV or JSON
// lines with the same filter (the daemon streams the file).
import { api } from './api.js';
import { h, fill, badge } from './dom.js';

const LEVELS = ['debug', 'info', 'warning', 'error', 'alert'];
const SHOWN = 500;

/** One event as a line of a log box (time, level, source, message). */
export function eventLine(event) {
  const t = new Date(event.time).toLocaleTimeString([], { hour12: false });
  return h('div', { class: event.level, dataset: { eventId: String(event.id) } },
    `${t}  ${event.level.padEnd(7)} ${event.source.padEnd(9)} ${event.message}`);
}

/** One event as a table row of the Logs page. */
export function eventRow(event) {
  return h('tr', { class: event.level, dataset: { eventId: String(event.id), level: event.level, source: event.source } },
    h('td', {}, new Date(event.time).toLocaleString([], { hour12: false })),
    h('td', {}, badge(event.level, event.level === 'alert' ? 'error' : event.level)),
    h('td', {}, event.source),
    h('td', { class: 'message' }, event.message),
    h('td', {}, event.run_id ? `#${event.run_id}` : ''));
}

/** The filter as query parameters (levels all ticked or none: no level filter). */
function query(filter, extra) {
  const params = new URLSearchParams(extra);
  if (filter.levels.length && filter.levels.length < LEVELS.length) for (const l of filter.levels) params.append('level', l);
  if (filter.source) params.append('source', filter.source);
  if (filter.q) params.set('q', filter.q);
  if (filter.since) params.set('since', filter.since);
  if (filter.until) params.set('until', filter.until);
  return params.toString();
}

/** A datetime-local value (the browser's time) as an ISO instant, or '' when empty. */
function instant(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

export function mount() {
  const levelBoxes = LEVELS.map((l) => h('input', { type: 'checkbox', value: l, checked: true, dataset: { level: l } }));
  const source = h('select', { id: 'log-source' }, h('option', { value: '' }, 'every source'));
  const text = h('input', { type: 'search', id: 'log-text', placeholder: 'words in the message' });
  const since = h('input', { type: 'datetime-local', id: 'log-since', step: 1 });
  const until = h('input', { type: 'datetime-local', id: 'log-until', step: 1 });
  const csv = h('a', { class: 'button', id: 'log-csv', download: '' }, 'Download CSV');
  const jsonl = h('a', { class: 'button', id: 'log-jsonl', download: '' }, 'Download JSON lines');
  const status = h('p', { class: 'muted', id: 'log-status' }, 'Loading…');
  const rows = h('tbody', {});
  const problem = h('p', { class: 'error', id: 'log-error', hidden: true });

  const current = () => ({
    levels: levelBoxes.filter((b) => b.checked).map((b) => b.value),
    source: source.value,
    q: text.value.trim(),
    since: instant(since.value),
    until: instant(until.value),
  });

  let seq = 0;
  async function load() {
    const filter = current();
    csv.href = `/api/events/export?${query(filter, { format: 'csv' })}`;
    jsonl.href = `/api/events/export?${query(filter, { format: 'jsonl' })}`;
    const mine = ++seq;
    if (!filter.levels.length) {
      fill(rows); status.textContent = 'Tick at least one level.'; return;
    }
    let events;
    try { events = await api(`/api/events?${query(filter, { newest: 'true', limit: String(SHOWN) })}`); }
    catch (e) { if (mine === seq) { problem.textContent = e.message; problem.hidden = false; } return; }
    if (mine !== seq) return; // a newer filter answered first
    problem.hidden = true;
    fill(rows, events.slice().reverse().map(eventRow));
    status.textContent = events.length === SHOWN
      ? `The newest ${SHOWN} events that match, newest first; the downloads hold every match.`
      : `${events.length} event${events.length === 1 ? '' : 's'} match, newest first.`;
  }

  async function loadSources() {
    try {
      const names = await api('/api/events/sources');
      const chosen = source.value;
      fill(source, h('option', { value: '' }, 'every source'),
        names.map((n) => h('option', { value: n, selected: n === chosen }, n)));
    } catch { /* the filter still works with every source */ }
  }

  let typing = null;
  text.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(load, 300); });
  for (const el of [...levelBoxes, source, since, until]) el.addEventListener('change', load);

  const element = h('div', { class: 'grid' },
    h('section', { class: 'card wide' },
      h('div', { class: 'row' }, h('h2', {}, 'Logs'), h('span', { class: 'spacer' }),
        h('button', { type: 'button', id: 'log-refresh', onclick: () => { loadSources(); load(); } }, 'Refresh')),
      h('div', { class: 'log-filters', id: 'log-filters' },
        h('fieldset', { class: 'log-levels' }, h('legend', {}, 'Levels'),
          levelBoxes.map((b) => h('label', {}, b, b.value))),
        h('label', {}, 'Source', source),
        h('label', {}, 'Text', text),
        h('label', {}, 'From (your time)', since),
        h('label', {}, 'Until', until)),
      h('div', { class: 'row', style: 'margin:.6rem 0' }, csv, jsonl),
      problem, status,
      h('div', { class: 'table-scroll' }, h('table', { id: 'log-table' },
        h('thead', {}, h('tr', {}, ['Time', 'Level', 'Source', 'Message', 'Run'].map((t) => h('th', {}, t)))),
        rows))));
  loadSources().then(load);
  return { element };
}

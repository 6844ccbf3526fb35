// Night plans: targets with goals, tonight's prediction, the nights run so far, start and stop.
import { api, describe } from './api.js';
import { h, fill, fmt, time, dateTime, badge, progressBar } from './dom.js';
import { notice, canControl } from './ui.js';

const EXAMPLE = {
  name: 'Autumn galaxies',
  template_id: 1,
  above: { altitude_deg: 30 },
  targets: [
    { name: 'M31', coordinates: { ra_hours: 0.712306, dec_deg: 41.2692 }, priority: 1,
      goals: [{ filter_name: 'L', exposure_s: 120, count: 60 }, { filter_name: 'R', exposure_s: 180, count: 20 }] },
    { name: 'M33', coordinates: { ra_hours: 1.564139, dec_deg: 30.66 }, priority: 2,
      goals: [{ filter_name: 'Ha', exposure_s: 300, count: 24 }] },
  ],
};

export function mount(planId) {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const safety = h('div', { id: 'safety' });
  const detail = h('div', { id: 'plan-detail' });
  const element = h('div', { class: 'grid' },
    h('section', { class: 'card' }, h('h2', {}, 'Safety'), safety),
    h('section', { class: 'card wide' }, h('h2', {}, 'Night plans'), list, canControl() ? editor(null) : null),
    planId ? h('section', { class: 'card wide' }, detail) : null);
  loadSafety(safety);
  loadList(list, planId);
  if (planId) loadDetail(detail, planId);
  const timer = setInterval(() => { loadSafety(safety); if (planId) loadDetail(detail, planId); }, 5000);
  return { element, unmount() { clearInterval(timer); } };
}

export async function loadSafety(box) {
  try {
    const s = await api('/api/safety');
    fill(box, h('div', { class: 'row' }, badge(s.state, s.state === 'safe' ? 'ok' : s.state === 'unsafe' ? 'error' : 'warning'),
      s.reason ? h('span', {}, s.reason) : null,
      s.since ? h('span', { class: 'muted' }, `since ${time(s.since)}`) : null),
    h('div', { class: 'muted' }, `safe delay ${fmt(s.safe_delay_s / 60, 0)} min`,
      s.active_night_id ? ` · night #${s.active_night_id} running` : ' · no night running'),
    s.lost_devices.length ? h('div', { class: 'error' }, `lost: ${s.lost_devices.join(', ')}`) : null);
  } catch (e) { fill(box, h('p', { class: 'error' }, e.message)); }
}

async function loadList(box, selected) {
  let plans;
  try { plans = await api('/api/plans'); } catch (e) { fill(box, h('p', { class: 'error' }, e.message)); return; }
  if (!plans.length) { fill(box, h('p', { class: 'muted' }, 'No plan yet.')); return; }
  fill(box, h('table', {},
    h('thead', {}, h('tr', {}, ['Plan', 'Targets', 'Enabled', 'Next start'].map((t) => h('th', {}, t)))),
    h('tbody', {}, plans.map((p) => h('tr', { class: `clickable${p.id === selected ? ' selected' : ''}`, onclick: () => { location.hash = `#/plans/${p.id}`; } },
      h('td', {}, h('a', { href: `#/plans/${p.id}` }, p.name)),
      h('td', {}, p.plan.targets.map((t) => t.name).join(', ')),
      h('td', {}, p.enabled ? 'yes' : 'no'),
      h('td', {}, p.next_start ? dateTime(p.next_start) : '—'))))));
}

async function loadDetail(box, planId) {
  let plan, progress, nights, tonight;
  try {
    [plan, progress, nights] = await Promise.all([
      api(`/api/plans/${planId}`), api(`/api/plans/${planId}/progress`), api(`/api/plans/${planId}/nights`)]);
  } catch (e) { fill(box, h('p', { class: 'error' }, e.message)); return; }
  try { tonight = await api(`/api/plans/${planId}/tonight`); } catch (e) { tonight = { error: e.message }; }
  const running = nights.find((n) => ['waiting', 'running', 'paused'].includes(n.state));
  const act = (action) => async (ev) => {
    ev.target.disabled = true;
    try { await api(`/api/plans/${planId}/${action}`, { method: 'POST' }); }
    catch (e) { notice(e.message); }
    loadDetail(box, planId);
  };
  fill(box,
    h('div', { class: 'row' }, h('h2', {}, plan.name),
      h('button', { class: 'control', type: 'button', id: 'plan-start', disabled: Boolean(running), onclick: act('start') }, 'Start tonight'),
      h('button', { class: 'control danger', type: 'button', id: 'plan-stop', disabled: !running, onclick: act('stop') }, 'Stop the night')),
    h('h3', {}, 'Goals'),
    h('table', {}, h('tbody', {}, progress.flatMap((t) => t.goals.map((g, i) => h('tr', {},
      h('td', {}, i === 0 ? t.target : ''), h('td', {}, g.label),
      h('td', {}, progressBar(g.done / g.count)), h('td', {}, `${g.done} / ${g.count}`)))))),
    h('h3', {}, 'Tonight (predicted)'),
    tonight.error ? h('p', { class: 'muted' }, tonight.error) : [
      h('p', { class: 'muted' }, `dusk ${time(tonight.dusk)} · dawn ${time(tonight.dawn)}`),
      h('table', { id: 'tonight' },
        h('thead', {}, h('tr', {}, ['Target', 'From', 'To', 'Ends by', 'Frames', 'Meridian flip'].map((x) => h('th', {}, x)))),
        h('tbody', {}, tonight.slots.map((s) => h('tr', {},
          h('td', {}, s.target), h('td', {}, time(s.start)), h('td', {}, time(s.end)), h('td', {}, s.ends_by),
          h('td', {}, Object.entries(s.frames).map(([k, v]) => `${v} × ${k}`).join(', ') || '—'),
          h('td', {}, s.meridian_flip ? time(s.meridian_flip) : '—'))))),
      Object.keys(tonight.left_over).length ? h('p', { class: 'muted' },
        `left for later nights: ${Object.entries(tonight.left_over).map(([k, v]) => `${k} ${v}`).join(', ')}`) : null],
    h('h3', {}, 'Nights'),
    nights.length ? h('table', {},
      h('thead', {}, h('tr', {}, ['Night', 'State', 'Target', 'Dusk', 'Dawn', 'Runs', 'Why it ended'].map((x) => h('th', {}, x)))),
      h('tbody', {}, nights.map((n) => h('tr', {},
        h('td', {}, `#${n.id}`), h('td', {}, badge(n.state)), h('td', {}, n.current_target || '—'),
        h('td', {}, dateTime(n.dusk)), h('td', {}, dateTime(n.dawn)), h('td', {}, n.run_ids.join(', ')),
        h('td', {}, n.reason || ''))))) : h('p', { class: 'muted' }, 'Not run yet.'));
}

/** A JSON editor for a new plan; the daemon's 422 names each field it refuses. */
function editor() {
  const text = h('textarea', { rows: 14, spellcheck: 'false', class: 'code', id: 'plan-json' }, JSON.stringify(EXAMPLE, null, 2));
  const errors = h('ul', { class: 'error', id: 'plan-errors' });
  const save = async () => {
    fill(errors);
    let plan;
    try { plan = JSON.parse(text.value); } catch (e) { fill(errors, h('li', {}, `not JSON: ${e.message}`)); return; }
    try {
      const saved = await api('/api/plans', { method: 'POST', body: { plan, enabled: true } });
      location.hash = `#/plans/${saved.id}`;
    } catch (e) {
      const items = Array.isArray(e.detail) ? e.detail : [e.detail];
      fill(errors, items.map((d) => h('li', {}, typeof d === 'object' && d && d.path !== undefined
        ? `${d.path || 'plan'}: ${d.message}${d.fix ? ` (${d.fix})` : ''}` : describe(d))));
    }
  };
  return h('details', {}, h('summary', {}, 'New plan'),
    h('p', { class: 'muted' }, 'Targets with a priority (1 first), goals per filter and exposure, and limits; template_id names the sequence template run for each target.'),
    text, errors, h('button', { class: 'control', type: 'button', id: 'plan-save', onclick: save }, 'Save plan'));
}

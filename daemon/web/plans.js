// Night plans: the list, a form editor (targets found by name, goals per filter, priorities,
// limits), tonight's chart (altitude curves, twilight, planned slots, flips), the nights run
// so far, start and stop.
import { api, describe } from './api.js';
import { h, s, fill, fmt, dateTime, badge, progressBar, sexagesimal } from './dom.js';
import { notice, canControl } from './ui.js';

const COLORS = ['#5b9bd9', '#d9825b', '#5fb37a', '#c78bd9', '#d8b24c', '#5bc8c8', '#e0605a', '#a0a8b8'];
const SKY = { day: 'day', civil: 'civil twilight', nautical: 'nautical twilight', astronomical: 'astronomical twilight', night: 'night' };

export function mount(planId) {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const safety = h('div', { id: 'safety' });
  const detail = h('div', { id: 'plan-detail' });
  const editorCard = h('section', { class: 'card wide', id: 'plan-editor-card', hidden: true });
  const view = { planId, detail, editorCard, list, sky: null };
  const element = h('div', { class: 'grid' },
    h('section', { class: 'card' }, h('h2', {}, 'Safety'), safety),
    h('section', { class: 'card wide' },
      h('div', { class: 'row' }, h('h2', {}, 'Night plans'), h('span', { class: 'spacer' }),
        h('button', { class: 'control', type: 'button', id: 'plan-new', onclick: () => openEditor(view, null) }, 'New plan')),
      list),
    editorCard,
    planId ? h('section', { class: 'card wide' }, detail) : null);
  loadSafety(safety);
  loadList(list, planId);
  if (planId) loadDetail(view);
  const timer = setInterval(() => { loadSafety(safety); if (planId) loadDetail(view); }, 5000);
  return { element, unmount() { clearInterval(timer); } };
}

export async function loadSafety(box) {
  try {
    const st = await api('/api/safety');
    fill(box, h('div', { class: 'row' }, badge(st.state, st.state === 'safe' ? 'ok' : st.state === 'unsafe' ? 'error' : 'warning'),
      st.reason ? h('span', {}, st.reason) : null,
      st.since ? h('span', { class: 'muted' }, `since ${new Date(st.since).toLocaleTimeString([], { hour12: false })}`) : null),
    h('div', { class: 'muted' }, `safe delay ${fmt(st.safe_delay_s / 60, 0)} min`,
      st.active_night_id ? ` · night #${st.active_night_id} running` : ' · no night running'),
    st.lost_devices.length ? h('div', { class: 'error' }, `lost: ${st.lost_devices.join(', ')}`) : null);
  } catch (e) { fill(box, h('p', { class: 'error' }, e.message)); }
}

async function loadList(box, selected) {
  let plans;
  try { plans = await api('/api/plans'); } catch (e) { fill(box, h('p', { class: 'error' }, e.message)); return; }
  if (!plans.length) { fill(box, h('p', { class: 'muted', id: 'plans-empty' }, 'No plan yet.')); return; }
  fill(box, h('div', { class: 'table-scroll' }, h('table', { id: 'plans' },
    h('thead', {}, h('tr', {}, ['Plan', 'Targets', 'Enabled', 'Next start'].map((t) => h('th', {}, t)))),
    h('tbody', {}, plans.map((p) => h('tr', { class: `clickable${p.id === selected ? ' selected' : ''}`, onclick: () => { location.hash = `#/plans/${p.id}`; } },
      h('td', {}, h('a', { href: `#/plans/${p.id}` }, p.name)),
      h('td', { class: 'wrap' }, p.plan.targets.map((t) => t.name).join(', ')),
      h('td', {}, p.enabled ? 'yes' : 'no'),
      h('td', {}, p.next_start ? dateTime(p.next_start) : '—')))))));
}

// ---- Times at the site: the daemon's time zone, with UTC beside it ----

function siteClock(sky) {
  const offsetMin = sky ? sky.utc_offset_min : -new Date().getTimezoneOffset();
  const sign = offsetMin < 0 ? '-' : '+';
  const abs = Math.abs(offsetMin);
  const pad = (n) => String(Math.floor(n)).padStart(2, '0');
  const zone = sky ? sky.timezone : 'browser time';
  return {
    label: `${zone} (UTC${sign}${pad(abs / 60)}:${pad(abs % 60)})`,
    local(t) { const d = new Date(new Date(t).getTime() + offsetMin * 60000); return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`; },
    utc(t) { const d = new Date(t); return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`; },
    offsetMs: offsetMin * 60000,
  };
}

// ---- The plan's page ----

async function loadDetail(view) {
  const { planId, detail: box } = view;
  let plan, progress, nights, tonight;
  try {
    [plan, progress, nights] = await Promise.all([
      api(`/api/plans/${planId}`), api(`/api/plans/${planId}/progress`), api(`/api/plans/${planId}/nights`)]);
  } catch (e) { fill(box, h('p', { class: 'error' }, e.message)); return; }
  try { tonight = await api(`/api/plans/${planId}/tonight`); } catch (e) { tonight = { error: e.message }; }
  if (!tonight.error && (!view.sky || Math.abs(new Date(view.sky.dusk) - new Date(tonight.dusk)) > 60000 || view.skyPlanVersion !== plan.updated_at)) {
    try { view.sky = await api(`/api/plans/${planId}/altitudes`); view.skyPlanVersion = plan.updated_at; } catch (e) { view.sky = null; }
  }
  view.plan = plan;
  const running = nights.find((n) => ['waiting', 'running', 'paused'].includes(n.state));
  const act = (action) => async (ev) => {
    ev.target.disabled = true;
    try { await api(`/api/plans/${planId}/${action}`, { method: 'POST' }); }
    catch (e) { notice(e.message); }
    loadDetail(view);
  };
  const clock = siteClock(view.sky);
  fill(box,
    h('div', { class: 'row' }, h('h2', { id: 'plan-name' }, plan.name),
      h('button', { class: 'control', type: 'button', id: 'plan-start', disabled: Boolean(running), onclick: act('start') }, 'Start tonight'),
      h('button', { class: 'control danger', type: 'button', id: 'plan-stop', disabled: !running, onclick: act('stop') }, 'Stop the night'),
      h('span', { class: 'spacer' }),
      h('button', { class: 'control', type: 'button', id: 'plan-edit', onclick: () => openEditor(view, plan) }, 'Edit'),
      deleteButton(planId)),
    h('h3', {}, 'Goals'),
    h('div', { class: 'table-scroll' }, h('table', {}, h('tbody', {}, progress.flatMap((t) => t.goals.map((g, i) => h('tr', {},
      h('td', {}, i === 0 ? t.target : ''), h('td', {}, g.label),
      h('td', {}, progressBar(g.done / g.count)), h('td', {}, `${g.done} / ${g.count}`))))))),
    h('h3', {}, 'Tonight (predicted)'),
    tonight.error ? h('p', { class: 'muted', id: 'tonight-error' }, tonight.error) : [
      tonightIssues(tonight.issues),
      view.sky ? tonightChart(view.sky, tonight, plan.plan) : null,
      h('p', { class: 'muted' }, `dusk ${clock.local(tonight.dusk)} · dawn ${clock.local(tonight.dawn)} · times: ${clock.label}`),
      h('div', { class: 'table-scroll' }, h('table', { id: 'tonight' },
        h('thead', {}, h('tr', {}, ['Target', 'From', 'To', 'Ends by', 'Frames', 'Meridian flip'].map((x) => h('th', {}, x)))),
        h('tbody', {}, tonight.slots.map((sl) => h('tr', {},
          h('td', {}, sl.target), h('td', { title: `${clock.utc(sl.start)} UTC` }, clock.local(sl.start)),
          h('td', { title: `${clock.utc(sl.end)} UTC` }, clock.local(sl.end)), h('td', {}, sl.ends_by),
          h('td', {}, Object.entries(sl.frames).map(([k, v]) => `${v} × ${k}`).join(', ') || '—'),
          h('td', {}, sl.meridian_flip ? clock.local(sl.meridian_flip) : '—')))))),
      Object.keys(tonight.left_over).length ? h('p', { class: 'muted' },
        `left for later nights: ${Object.entries(tonight.left_over).map(([k, v]) => `${k} ${v}`).join(', ')}`) : null],
    h('h3', {}, 'Nights'),
    nights.length ? h('div', { class: 'table-scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Night', 'State', 'Target', 'Dusk', 'Dawn', 'Runs', 'Why it ended'].map((x) => h('th', {}, x)))),
      h('tbody', {}, nights.map((n) => h('tr', {},
        h('td', {}, `#${n.id}`), h('td', {}, badge(n.state)), h('td', {}, n.current_target || '—'),
        h('td', {}, dateTime(n.dusk)), h('td', {}, dateTime(n.dawn)), h('td', {}, n.run_ids.join(', ')),
        h('td', {}, n.reason || '')))))) : h('p', { class: 'muted' }, 'Not run yet.'));
}

/** Delete asks once more in place (no browser dialog). */
function deleteButton(planId) {
  const button = h('button', { class: 'control danger', type: 'button', id: 'plan-delete' }, 'Delete');
  let armed = false;
  button.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      button.textContent = 'Really delete?';
      setTimeout(() => { armed = false; button.textContent = 'Delete'; }, 5000);
      return;
    }
    button.disabled = true;
    try {
      await api(`/api/plans/${planId}`, { method: 'DELETE' });
      location.hash = '#/plans';
    } catch (e) { notice(e.message); button.disabled = false; }
  });
  return button;
}

/** What stops tonight's plan from working (unknown filter, a target never up, sun up). */
function tonightIssues(issues) {
  if (!issues || !issues.length) return null;
  return h('div', { class: 'plan-issues', id: 'tonight-issues', role: 'alert' },
    h('strong', {}, issues.length === 1 ? 'A problem with tonight:' : `${issues.length} problems with tonight:`),
    h('ul', {}, issues.map((i) => h('li', {},
      i.path ? h('code', {}, i.path) : null, i.path ? ': ' : null, i.message || i.msg || describe(i),
      i.fix ? h('span', { class: 'muted' }, ` — ${i.fix}`) : null))));
}

// ---- Tonight's chart ----

const CW = 800, CH = 330, CP = { left: 34, right: 12, top: 12, plot: 230, lane: 22 };

/** Altitude over the night: twilight bands behind, each target's curve (its planned slots
 * drawn thick and in the lane below), its limit dashed, meridian flips marked; hours in the
 * site's time zone with UTC below. */
function tonightChart(sky, tonight, plan) {
  const clock = siteClock(sky);
  const t0 = new Date(sky.times[0]).getTime();
  const t1 = new Date(sky.times[sky.times.length - 1]).getTime();
  const x = (t) => CP.left + ((new Date(t).getTime() - t0) / (t1 - t0)) * (CW - CP.left - CP.right);
  const y = (alt) => CP.top + (1 - Math.max(-3, Math.min(90, alt)) / 90) * CP.plot;
  const bottom = CP.top + CP.plot;
  const laneY = bottom + 6;
  const color = new Map(sky.targets.map((c, i) => [c.target, COLORS[i % COLORS.length]]));
  const svg = s('svg', { class: 'chart tonight-chart', id: 'tonight-chart', viewBox: `0 0 ${CW} ${CH}`, role: 'img',
    'aria-label': `Altitude of the plan's targets tonight; times in ${clock.label} and UTC` });
  const clipId = `tonight-clip-${Math.random().toString(36).slice(2)}`;
  svg.append(s('defs', {}, s('clipPath', { id: clipId }, s('rect', { x: CP.left, y: CP.top, width: CW - CP.left - CP.right, height: CP.plot }))));
  for (const band of sky.bands) {
    svg.append(s('rect', { class: `sky-band sky-${band.kind}`, x: x(band.start), y: CP.top, width: Math.max(0, x(band.end) - x(band.start)), height: CP.plot },
      s('title', {}, `${SKY[band.kind]} ${clock.local(band.start)}–${clock.local(band.end)}`)));
  }
  for (const alt of [0, 30, 60, 90]) {
    svg.append(s('line', { class: 'grid-line', x1: CP.left, x2: CW - CP.right, y1: y(alt), y2: y(alt) }));
    svg.append(s('text', { x: CP.left - 4, y: y(alt) + 4, 'text-anchor': 'end' }, `${alt}°`));
  }
  const path = (values, from = t0, to = t1) => sky.times.map((t, i) => [new Date(t).getTime(), values[i]])
    .filter(([t]) => t >= from - 1 && t <= to + 1)
    .map(([t, v], i) => `${i ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const plot = s('g', { 'clip-path': `url(#${clipId})` });
  const limits = new Set();
  for (const curve of sky.targets) {
    const key = curve.limit_deg.join(',');
    if (!limits.has(key)) {
      limits.add(key);
      plot.append(s('path', { class: 'limit-line', d: path(curve.limit_deg), stroke: color.get(curve.target) },
        s('title', {}, `altitude limit of ${curve.target}`)));
    }
    plot.append(s('path', { class: 'altitude-line', d: path(curve.altitude_deg), stroke: color.get(curve.target), dataset: { target: curve.target } },
      s('title', {}, `${curve.target} (priority ${curve.priority})`)));
  }
  for (const slot of tonight.slots) {
    const curve = sky.targets.find((c) => c.target === slot.target);
    const a = new Date(slot.start).getTime(), b = new Date(slot.end).getTime();
    if (curve) {
      // The slot's stretch of the curve, with its exact ends interpolated.
      const inside = sky.times.map((t, i) => [new Date(t).getTime(), curve.altitude_deg[i]]).filter(([t]) => t > a && t < b);
      const at = (t) => interpolate(sky.times, curve.altitude_deg, t);
      const points = [[a, at(a)], ...inside, [b, at(b)]];
      plot.append(s('path', { class: 'slot-line', stroke: color.get(slot.target),
        d: points.map(([t, v], i) => `${i ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ') }));
    }
    const frames = Object.entries(slot.frames).map(([k, v]) => `${v} × ${k}`).join(', ') || 'no frame';
    const lane = s('g', { class: 'slot', dataset: { target: slot.target } },
      s('rect', { x: x(a), y: laneY, width: Math.max(1, x(b) - x(a)), height: CP.lane, fill: color.get(slot.target) || COLORS[0] }),
      s('title', {}, `${slot.target} ${clock.local(a)}–${clock.local(b)} (${clock.utc(a)}–${clock.utc(b)} UTC): ${frames}; ends by ${slot.ends_by}`));
    if (x(b) - x(a) > 8 * slot.target.length) {
      lane.append(s('text', { class: 'slot-label', x: x(a) + 4, y: laneY + CP.lane / 2 + 4 }, slot.target));
    }
    svg.append(lane);
    if (slot.meridian_flip) {
      const fx = x(slot.meridian_flip);
      svg.append(s('g', { class: 'flip' },
        s('line', { x1: fx, x2: fx, y1: CP.top, y2: laneY + CP.lane }),
        s('text', { x: fx + 3, y: CP.top + 12 }, 'flip'),
        s('title', {}, `meridian flip of ${slot.target} at ${clock.local(slot.meridian_flip)} (${clock.utc(slot.meridian_flip)} UTC)`)));
    }
  }
  svg.append(plot);
  for (const [when, label] of [[sky.dusk, 'dusk'], [sky.dawn, 'dawn']]) {
    const tx = x(when);
    svg.append(s('line', { class: 'twilight-mark', x1: tx, x2: tx, y1: CP.top, y2: bottom }));
    svg.append(s('text', { x: tx + (label === 'dusk' ? 3 : -3), y: bottom - 4, 'text-anchor': label === 'dusk' ? 'start' : 'end' }, label));
  }
  svg.append(s('line', { class: 'axis', x1: CP.left, x2: CW - CP.right, y1: bottom, y2: bottom }));
  // Hour ticks on the site's clock; every second hour labelled when the night is long.
  const hour = 3600000;
  const stepH = (t1 - t0) / hour > 10 ? 2 : 1;
  const axisY = laneY + CP.lane + 16;
  let first = Math.ceil((t0 + clock.offsetMs) / hour) * hour - clock.offsetMs;
  for (let t = first, n = 0; t <= t1; t += hour, n += 1) {
    const tx = x(t);
    svg.append(s('line', { class: 'axis', x1: tx, x2: tx, y1: bottom, y2: bottom + 4 }));
    if (n % stepH) continue;
    svg.append(s('text', { class: 'tick-local', x: tx, y: axisY, 'text-anchor': 'middle' }, clock.local(t)));
    svg.append(s('text', { class: 'tick-utc', x: tx, y: axisY + 16, 'text-anchor': 'middle' }, clock.utc(t)));
  }
  svg.append(s('text', { x: 2, y: axisY, 'text-anchor': 'start' }, 'site'));
  svg.append(s('text', { x: 2, y: axisY + 16, 'text-anchor': 'start' }, 'UTC'));
  const legend = h('div', { class: 'chart-legend' },
    sky.targets.map((c) => h('span', { class: 'legend-item' }, h('span', { class: 'swatch', style: `background:${color.get(c.target)}` }), `${c.target} (priority ${c.priority})`)),
    ['civil', 'nautical', 'astronomical'].map((k) => h('span', { class: 'legend-item' }, h('span', { class: `swatch sky-${k}` }), SKY[k])),
    h('span', { class: 'legend-item muted' }, `site times: ${clock.label}; dashed: altitude limit; bar: planned slot`));
  return h('figure', { class: 'tonight-figure' }, h('div', { class: 'chart-scroll' }, svg), legend);
}

function interpolate(times, values, t) {
  const ts = times.map((x) => new Date(x).getTime());
  if (t <= ts[0]) return values[0];
  for (let i = 1; i < ts.length; i += 1) {
    if (t <= ts[i]) return values[i - 1] + ((values[i] - values[i - 1]) * (t - ts[i - 1])) / (ts[i] - ts[i - 1]);
  }
  return values[values.length - 1];
}

// ---- The plan form ----

function blankGoal() { return { filter_name: 'L', exposure_s: 120, count: 20 }; }
function blankTarget(priority) { return { name: '', coordinates: {}, priority, goals: [blankGoal()] }; }

/** Open the form: a new plan (null) or a saved one, whose fields the form does not show
 * (gain, rotation, a horizon offset…) are kept as they are. */
async function openEditor(view, saved) {
  const card = view.editorCard;
  card.hidden = false;
  fill(card, h('p', { class: 'muted' }, 'Loading…'));
  let templates = [], recipes = [];
  try { [templates, recipes] = await Promise.all([api('/api/templates'), api('/api/recipes').catch(() => [])]); }
  catch (e) { fill(card, h('p', { class: 'error' }, e.message)); return; }
  const state = saved ? structuredClone(saved.plan)
    : { name: '', template_id: templates.length ? templates[0].id : undefined, above: { altitude_deg: 30 }, targets: [blankTarget(1)] };
  const form = new PlanForm(state, { id: saved ? saved.id : null, enabled: saved ? saved.enabled : true, templates, recipes },
    () => { card.hidden = true; fill(card); },
    (row) => {
      card.hidden = true; fill(card);
      if (view.planId === row.id) { loadDetail(view); loadList(view.list, row.id); }
      else location.hash = `#/plans/${row.id}`;
    });
  fill(card, h('h2', {}, saved ? `Edit ${saved.name}` : 'New plan'), form.element);
  card.scrollIntoView({ block: 'start' });
}

class PlanForm {
  constructor(plan, { id, enabled, templates, recipes }, onCancel, onSaved) {
    this.plan = plan;
    this.id = id;
    this.enabled = enabled;
    this.templates = templates;
    this.recipes = recipes;
    this.onCancel = onCancel;
    this.onSaved = onSaved;
    this.element = h('div', { class: 'plan-form', id: 'plan-form' });
    this.render();
  }

  render() {
    const p = this.plan;
    const enabled = h('input', { type: 'checkbox', id: 'plan-enabled', checked: this.enabled, onchange: (e) => { this.enabled = e.target.checked; } });
    this.general = h('ul', { class: 'error', id: 'plan-errors' });
    fill(this.element,
      h('div', { class: 'form-grid' },
        field('Name', 'name', textInput(p, 'name', { id: 'plan-name-input', placeholder: 'Autumn galaxies' })),
        field('Sequence template', 'template_id', select(p, 'template_id',
          this.templates.map((t) => [t.id, `${t.name} (#${t.id})`]), { id: 'plan-template', required: true }),
        'run for each target'),
        field('Processing recipe', 'recipe_id', select(p, 'recipe_id',
          [['', 'the default recipe'], ...this.recipes.map((r) => [r.id, r.name])], { id: 'plan-recipe' })),
        h('label', { class: 'field check' }, enabled, h('span', {}, 'Enabled (started at dusk by the scheduler)'))),
      h('fieldset', {}, h('legend', {}, 'Limits for every target'),
        h('div', { class: 'form-grid' },
          field('Lowest altitude (°)', 'above.altitude_deg', numberInput(p.above || (p.above = {}), 'altitude_deg', { placeholder: 'custom horizon' }), 'empty: the custom horizon'),
          field('Horizon offset (°)', 'above.offset_deg', numberInput(p.above, 'offset_deg', { placeholder: '0' })),
          field('Moon distance (°)', 'moon_separation_deg', numberInput(p, 'moon_separation_deg', { placeholder: '0' })),
          field('Shortest slot (min)', 'min_slot_min', numberInput(p, 'min_slot_min', { placeholder: '10' })),
          field('Dusk: sun below (°)', 'dusk_sun_altitude_deg', numberInput(p, 'dusk_sun_altitude_deg', { placeholder: '-12' })),
          field('Dawn: sun above (°)', 'dawn_sun_altitude_deg', numberInput(p, 'dawn_sun_altitude_deg', { placeholder: '-12' })))),
      group('targets', h('h3', {}, 'Targets'),
        p.targets.map((t, i) => this.targetCard(t, i)),
        h('button', { type: 'button', id: 'plan-add-target', onclick: () => { p.targets.push(blankTarget(p.targets.length + 1)); this.render(); } }, 'Add target')),
      this.general,
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'primary', id: 'plan-save', onclick: () => this.save() }, 'Save plan'),
        h('button', { type: 'button', id: 'plan-cancel', onclick: () => this.onCancel() }, 'Cancel')));
  }

  targetCard(t, i) {
    const at = `targets[${i}]`;
    t.coordinates = t.coordinates || {};
    const where = h('span', { class: 'muted coord-hint' });
    const showWhere = () => {
      const { ra_hours: ra, dec_deg: dec } = t.coordinates;
      where.textContent = typeof ra === 'number' && typeof dec === 'number' ? `${sexagesimal(ra)} ${sexagesimal(dec, true)}` : '';
    };
    showWhere();
    const window = t.window || {};
    const setWindow = (key) => (e) => {
      const w = { ...(t.window || {}) };
      if (e.target.value) w[key] = e.target.value; else delete w[key];
      if (Object.keys(w).length) t.window = w; else delete t.window;
    };
    const aboveInput = h('input', { type: 'text', inputmode: 'decimal', placeholder: 'the plan\'s', value: t.above && t.above.altitude_deg != null ? String(t.above.altitude_deg) : '',
      oninput: (e) => { const v = parseValue(e.target.value, true); if (v === undefined) delete t.above; else t.above = { ...(t.above || {}), altitude_deg: v }; } });
    return group(at, h('div', { class: 'target-card', dataset: { target: String(i) } },
      h('div', { class: 'row target-head' }, h('strong', {}, `Target ${i + 1}`), h('span', { class: 'spacer' }),
        this.plan.targets.length > 1 ? h('button', { type: 'button', class: 'danger target-remove', onclick: () => { this.plan.targets.splice(i, 1); this.render(); } }, 'Remove target') : null),
      this.search(t, i),
      h('div', { class: 'form-grid' },
        field('Name', `${at}.name`, textInput(t, 'name', { class: 'target-name' })),
        field('RA (hours or hh:mm:ss)', `${at}.coordinates.ra_hours`, coordInput(t.coordinates, 'ra_hours', { class: 'target-ra', oninput: showWhere })),
        field('Dec (degrees or ±dd:mm:ss)', `${at}.coordinates.dec_deg`, coordInput(t.coordinates, 'dec_deg', { class: 'target-dec', oninput: showWhere })),
        field('Priority (1 first)', `${at}.priority`, numberInput(t, 'priority', { class: 'target-priority', placeholder: '5' })),
        field('Lowest altitude (°)', `${at}.above`, aboveInput),
        field('Moon distance (°)', `${at}.moon_separation_deg`, numberInput(t, 'moon_separation_deg', { placeholder: 'the plan\'s' })),
        field('From (UTC)', `${at}.window.start`, h('input', { type: 'time', value: window.start ? String(window.start).slice(0, 5) : '', oninput: setWindow('start') })),
        field('Until (UTC)', `${at}.window.end`, h('input', { type: 'time', value: window.end ? String(window.end).slice(0, 5) : '', oninput: setWindow('end') }))),
      where,
      group(`${at}.goals`, h('div', { class: 'goals' },
        h('div', { class: 'muted' }, 'Goals: accepted frames per filter and exposure, over all nights'),
        t.goals.map((g, j) => this.goalRow(t, g, `${at}.goals[${j}]`, j)),
        h('button', { type: 'button', class: 'goal-add', onclick: () => { t.goals.push(blankGoal()); this.render(); } }, 'Add goal')))));
  }

  goalRow(t, g, at, j) {
    return group(at, h('div', { class: 'goal-row form-grid', dataset: { goal: String(j) } },
      field('Filter', `${at}.filter_name`, textInput(g, 'filter_name', { class: 'goal-filter', placeholder: 'none' })),
      field('Exposure (s)', `${at}.exposure_s`, numberInput(g, 'exposure_s', { class: 'goal-exposure' })),
      field('Count', `${at}.count`, numberInput(g, 'count', { class: 'goal-count' })),
      field('Binning', `${at}.binning`, numberInput(g, 'binning', { class: 'goal-binning', placeholder: '1' })),
      h('div', { class: 'field' }, h('span', {}, ' '),
        h('button', { type: 'button', class: 'goal-remove', onclick: () => { t.goals.splice(j, 1); this.render(); } }, 'Remove'))));
  }

  /** A name box asking the daemon's target search; a pick fills name, RA and Dec. */
  search(t, i) {
    const box = h('input', { type: 'search', class: 'target-search', placeholder: 'Find by name: M31, NGC 7000, Vega…', 'aria-label': `find target ${i + 1} by name` });
    const results = h('div', { class: 'search-results' });
    const run = async () => {
      const q = box.value.trim();
      if (!q) { fill(results); return; }
      fill(results, h('span', { class: 'muted' }, 'Searching…'));
      let found;
      try { found = await api(`/api/targets/search?q=${encodeURIComponent(q)}`); }
      catch (e) {
        fill(results, h('span', { class: 'muted' }, e.status === 404 || e.status === 405
          ? 'The name search is not available: enter RA and Dec below.' : `Search failed: ${e.message}`));
        return;
      }
      const items = Array.isArray(found) ? found : (found && (found.results || found.items)) || [];
      if (!items.length) { fill(results, h('span', { class: 'muted' }, `Nothing found for “${q}”: enter RA and Dec below.`)); return; }
      fill(results, items.slice(0, 8).map((r) => h('button', { type: 'button', class: 'search-hit', onclick: () => {
        t.name = r.name;
        t.coordinates = { ...t.coordinates, ra_hours: r.ra_hours, dec_deg: r.dec_deg };
        this.render();
      } }, [r.name, (r.aliases || []).slice(0, 1).join(''), r.kind,
        `${r.ra_hms || sexagesimal(r.ra_hours)} ${r.dec_dms || sexagesimal(r.dec_deg, true)}`].filter(Boolean).join(' · '))));
    };
    box.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); run(); } });
    return h('div', { class: 'target-find' },
      h('div', { class: 'row' }, box, h('button', { type: 'button', class: 'target-search-go', onclick: run }, 'Find')), results);
  }

  async save() {
    for (const el of this.element.querySelectorAll('.field-error')) el.textContent = '';
    for (const el of this.element.querySelectorAll('.invalid')) el.classList.remove('invalid');
    fill(this.general);
    const button = this.element.querySelector('#plan-save');
    button.disabled = true;
    try {
      const body = { plan: this.plan, enabled: this.enabled };
      const row = this.id
        ? await api(`/api/plans/${this.id}`, { method: 'PUT', body })
        : await api('/api/plans', { method: 'POST', body });
      this.onSaved(row);
    } catch (e) {
      this.showErrors(e);
    } finally {
      button.disabled = false;
    }
  }

  /** Each refusal beside the field it names (or its nearest shown parent), the rest below. */
  showErrors(e) {
    let first = null;
    for (const issue of issuesOf(e)) {
      const text = `${issue.message}${issue.fix ? ` (${issue.fix})` : ''}`;
      const place = placeFor(this.element, issue.path);
      if (!place) {
        this.general.append(h('li', {}, issue.path ? `${issue.path}: ${text}` : text));
        continue;
      }
      const { element, exact } = place;
      element.classList.add('invalid');
      const slot = element.querySelector(':scope > .field-error');
      const line = exact ? text : `${issue.path}: ${text}`;
      slot.textContent = slot.textContent ? `${slot.textContent}; ${line}` : line;
      first = first || element;
    }
    if (first) first.scrollIntoView({ block: 'center' });
    else this.general.scrollIntoView({ block: 'center' });
  }
}

/** The problems of a refused save as {path, message, fix}: Nightowl's issue list
 * ({path, msg, fix, loc}), FastAPI's 422 ({loc, msg}), {message, issues} or a plain text. */
export function issuesOf(error) {
  const d = error.detail;
  if (Array.isArray(d)) {
    return d.map((item) => (item && typeof item === 'object'
      ? { path: item.path !== undefined ? item.path : locPath(item.loc), message: item.msg || item.message || describe(item), fix: item.fix }
      : { path: '', message: String(item) }));
  }
  if (d && typeof d === 'object' && Array.isArray(d.issues)) {
    return d.issues.map((i) => ({ path: i.path || '', message: i.message || i.msg, fix: i.fix }));
  }
  return [{ path: '', message: error.message }];
}

function locPath(loc) {
  const parts = [...(loc || [])];
  if (parts[0] === 'body') parts.shift();
  if (parts[0] === 'plan') parts.shift();
  return parts.reduce((path, part) => (typeof part === 'number' ? `${path}[${part}]` : path ? `${path}.${part}` : String(part)), '');
}

function placeFor(root, path) {
  let p = path || '';
  let exact = true;
  while (p) {
    const found = root.querySelector(`[data-path="${CSS.escape(p)}"]`);
    if (found) return { element: found, exact };
    exact = false;
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    p = cut > 0 ? p.slice(0, cut) : '';
  }
  return null;
}

// ---- Inputs bound to the plan document ----

function field(label, path, input, hint) {
  return h('label', { class: 'field', dataset: { path } }, h('span', {}, label), input,
    hint ? h('small', { class: 'muted' }, hint) : null, h('span', { class: 'field-error', 'aria-live': 'polite' }));
}

function group(path, ...children) {
  return h('div', { class: 'field-group', dataset: { path } }, h('span', { class: 'field-error', 'aria-live': 'polite' }), ...children);
}

/** '' → undefined (the field is left out: its default); a number when it reads as one; else
 * the text as typed, for the daemon to accept (hh:mm:ss) or name. */
function parseValue(text, numeric) {
  const v = text.trim();
  if (v === '') return undefined;
  if (!numeric) return v;
  const n = Number(v);
  return Number.isFinite(n) ? n : v;
}

function bound(obj, key, numeric, attrs) {
  const { oninput, ...rest } = attrs || {};
  return h('input', { type: 'text', inputmode: numeric ? 'decimal' : undefined, ...rest,
    value: obj[key] === undefined || obj[key] === null ? '' : String(obj[key]),
    oninput: (e) => {
      const v = parseValue(e.target.value, numeric);
      if (v === undefined) delete obj[key]; else obj[key] = v;
      if (oninput) oninput(e);
    } });
}

function textInput(obj, key, attrs) { return bound(obj, key, false, attrs); }
function numberInput(obj, key, attrs) { return bound(obj, key, true, attrs); }
function coordInput(obj, key, attrs) { return bound(obj, key, true, attrs); }

function select(obj, key, options, attrs) {
  const { required, ...rest } = attrs || {};
  const el = h('select', { ...rest, onchange: (e) => {
    const v = e.target.value;
    if (v === '') delete obj[key]; else obj[key] = Number(v);
  } }, options.map(([value, label]) => h('option', { value: String(value), selected: String(obj[key] ?? '') === String(value) }, label)));
  if (required && obj[key] === undefined && options.length) obj[key] = Number(options[0][0]);
  return el;
}

// The dashboard: equipment, the observatory (roof, cover, weather, switches) with its buttons,
// the running sequence, the last frame, the night's live stacks, the night's graphs and the
// event log, kept live by the daemon's event stream. The equipment is what the daemon's poller
// last read (every 2 s): asking for it costs the devices nothing.
import { api } from './api.js';
import { h, fill, fmt, time, badge, progressBar, sexagesimal, figures } from './dom.js';
import { OBSERVATORY_ROLES, deviceBlock, renderObservatory } from './devices.js';
import { lineChart } from './charts.js';
import { notice } from './ui.js';
import { loadSafety } from './plans.js';

const ACTIVE = new Set(['pending', 'running', 'paused']);

export function mount() {
  const equipment = h('div', { id: 'equipment' }, h('p', { class: 'muted' }, 'Asking the devices…'));
  const safety = h('div', { id: 'safety' });
  const observatory = h('div', { id: 'observatory' }, h('p', { class: 'muted' }, 'Asking the devices…'));
  const run = h('div', { id: 'run' }, h('p', { class: 'muted' }, 'Loading runs…'));
  const frame = h('div', { id: 'frame', class: 'preview' }, h('p', { class: 'muted' }, 'No frame yet.'));
  const charts = h('div', { id: 'charts' });
  const live = h('div', { id: 'live' }, h('p', { class: 'muted' }, 'No live stack yet.'));
  const log = h('div', { id: 'log', class: 'log' });
  const element = h('div', { class: 'grid dashboard' },
    h('section', { class: 'card' }, h('h2', {}, 'Equipment'), h('h3', {}, 'Safety'), safety, equipment),
    h('section', { class: 'card' }, h('h2', {}, 'Observatory'), observatory),
    h('section', { class: 'card' }, h('h2', {}, 'Sequence'), run),
    h('section', { class: 'card' }, h('h2', {}, 'Last frame'), frame),
    h('section', { class: 'card wide' }, h('h2', {}, 'Live stack'), live),
    h('section', { class: 'card wide' }, h('h2', {}, 'Tonight'), charts),
    h('section', { class: 'card wide' }, h('h2', {}, 'Events'), log));

  const timers = [];
  let stream = null;
  let closed = false;
  let shownFrame = null;
  let pending = {};

  // Several events in a burst cause one refresh of each part.
  function soon(name, fn, ms = 300) {
    if (pending[name]) return;
    pending[name] = setTimeout(() => { pending[name] = null; if (!closed) fn(); }, ms);
  }

  // Commands on their way (a roof takes a while): their buttons stay disabled across refreshes.
  const commands = new Set();
  async function command(path, body) {
    commands.add(path);
    loadEquipment();
    try { await api(`/api/equipment/${path}`, { method: 'POST', body }); }
    catch (e) { notice(e.message); }
    finally { commands.delete(path); loadEquipment(); }
  }

  function showEquipment(eq) {
    renderEquipment(equipment, eq, showEquipment);
    renderObservatory(observatory, eq, command, (path) => commands.has(path));
  }

  async function loadEquipment() {
    try { showEquipment(await api('/api/equipment')); }
    catch (e) { fill(equipment, h('p', { class: 'error' }, e.message)); }
  }

  async function loadRun() {
    try {
      const runs = await api('/api/runs');
      const chosen = runs.find((r) => ACTIVE.has(r.status)) || runs[0];
      if (!chosen) { fill(run, h('p', { class: 'muted' }, 'No run yet. Start one from a sequence template.')); return; }
      renderRun(run, await api(`/api/runs/${chosen.id}`), loadRun);
    } catch (e) { fill(run, h('p', { class: 'error' }, e.message)); }
  }

  // The newest frame wins: events name frames out of order (a frame measured after the next
  // one was saved), and answers to the requests below may come back out of order too.
  async function showFrame(id) {
    if (id && shownFrame && id <= shownFrame) return;
    try {
      const record = id ? await api(`/api/frames/${id}`) : await api('/api/frames/latest');
      if (shownFrame && record.id <= shownFrame) return;
      shownFrame = record.id;
      renderFrame(frame, record);
    } catch (e) {
      if (e.status !== 404) fill(frame, h('p', { class: 'error' }, e.message));
    }
  }

  async function loadNight() {
    try {
      const sessions = await api('/api/sessions');
      if (!sessions.length) { renderCharts(charts, null, []); return; }
      const night = sessions[0];
      const frames = await api(`/api/sessions/${night.id}/frames?frame_type=LIGHT&limit=1000`);
      renderCharts(charts, night, frames.items);
    } catch (e) { fill(charts, h('p', { class: 'error' }, e.message)); }
  }

  async function loadLive() {
    try { renderLive(live, await api('/api/live')); }
    catch (e) { fill(live, h('p', { class: 'error' }, e.message)); }
  }

  // The node an event concerns by its name; its path stays for machines (data, tooltip).
  function addEvent(event, atTop) {
    const node = event.data && event.data.node;
    const line = h('div', { class: event.level, title: event.node_path || null,
      dataset: event.node_path ? { eventId: String(event.id), path: event.node_path } : { eventId: String(event.id) } },
      `${time(event.time)}  ${event.level.padEnd(7)} ${event.source.padEnd(9)} `,
      node && !event.message.startsWith(node) ? h('span', { class: 'event-node' }, `[${node}] `) : null,
      event.message);
    if (atTop) log.prepend(line); else log.append(line);
    while (log.childElementCount > 300) log.lastElementChild.remove();
  }

  async function startLog() {
    let last = 0;
    try {
      const recent = await api('/api/events?newest=true&limit=100');
      for (const event of recent) addEvent(event, true);
      if (recent.length) last = recent[recent.length - 1].id;
    } catch (e) { log.append(h('div', { class: 'error' }, e.message)); }
    if (closed) return;
    stream = new EventSource(`/api/events/stream?after_id=${last}`);
    stream.onmessage = (message) => {
      const event = JSON.parse(message.data);
      addEvent(event, true);
      if (event.source === 'live') soon('live', loadLive, 200);
      else if (event.data && event.data.frame_id) {
        showFrame(event.data.frame_id);
        soon('night', loadNight, 500);
      }
      if (event.run_id || event.source === 'sequence') soon('run', loadRun);
      if (event.source === 'safety' || event.source === 'plan') soon('safety', () => loadSafety(safety));
      if (event.source === 'equipment' || event.source === 'observatory') soon('equipment', loadEquipment);
    };
  }

  async function start() {
    if (closed) return;
    loadEquipment();
    loadSafety(safety);
    loadRun();
    showFrame(null);
    loadNight();
    loadLive();
    startLog();
  }
  start();
  // A device connecting, failing or answering again comes as an event (above); figures change
  // without events (temperature, pointing): ask for them every 5 s.
  timers.push(setInterval(loadEquipment, 5000));
  timers.push(setInterval(() => { if (run.dataset.active === 'true') loadRun(); }, 3000));

  return {
    element,
    unmount() {
      closed = true;
      timers.forEach(clearInterval);
      Object.values(pending).forEach((t) => t && clearTimeout(t));
      if (stream) stream.close();
    },
  };
}

function deviceFigures(role, st) {
  if (!st) return [];
  const pairs = [];
  if ('sensor_temperature_c' in st) {
    pairs.push(['Temperature', `${fmt(st.sensor_temperature_c, 1, ' °C')} (set ${fmt(st.set_point_c, 1, ' °C')})`]);
    pairs.push(['Cooler', `${st.cooler_on ? 'on' : 'off'}, ${fmt(st.cooler_power_pct, 0, ' %')}`]);
    pairs.push(['State', st.state]);
  }
  if (st.position && typeof st.position === 'object') {
    pairs.push(['RA / Dec', `${sexagesimal(st.position.ra_hours)}  ${sexagesimal(st.position.dec_deg, true)}`]);
    pairs.push(['Alt / Az', `${fmt(st.altitude_deg, 1, '°')} / ${fmt(st.azimuth_deg, 1, '°')}`]);
    pairs.push(['Pier side', st.side_of_pier]);
    pairs.push(['Parked', st.at_park ? 'yes' : 'no']);
    pairs.push(['Tracking', st.slewing ? 'slewing' : st.tracking ? 'on' : 'off']);
  } else if ('is_moving' in st) {
    pairs.push(['Position', `${st.position}${st.is_moving ? ' (moving)' : ''}`]);
    pairs.push(['Temperature', fmt(st.temperature_c, 1, ' °C')]);
  }
  if ('filter_name' in st) pairs.push(['Filter', st.filter_name ?? '—']);
  if ('is_safe' in st) pairs.push(['Safety', st.is_safe ? 'safe' : 'UNSAFE']);
  return pairs;
}

// The imaging devices; the observatory's are on their own card (devices.js).
function renderEquipment(box, eq, show) {
  const anyOff = eq.devices.some((d) => !d.connected);
  const connect = h('button', { class: 'control', type: 'button', onclick: async (ev) => {
    ev.target.disabled = true;
    try { show(await api('/api/equipment/connect', { method: 'POST' })); }
    catch (e) { notice(e.message); }
    finally { ev.target.disabled = false; }
  } }, 'Connect all');
  fill(box,
    h('div', { class: 'row muted' }, `profile ${eq.profile}`, anyOff ? connect : null),
    eq.devices.filter((d) => !OBSERVATORY_ROLES.includes(d.role))
      .map((d) => deviceBlock(d, deviceFigures(d.role, d.status))));
}

function nodeLabel(node) {
  const kind = node.kind || 'sequential';
  const name = node.target_name || node.name;
  return name ? `${kind} · ${name}` : kind;
}

/** The node of a run's document at a path like "targets[0].items[5].items[0]". */
export function nodeAt(doc, path) {
  let node = doc;
  for (const part of String(path).split('.')) {
    const m = part.match(/^(\w+)(?:\[(\d+)\])?$/);
    if (!m || !node) return null;
    node = m[2] === undefined ? node[m[1]] : (node[m[1]] || [])[Number(m[2])];
  }
  return node || null;
}

function treeNode(node, path, state, current, finished) {
  const st = state[path] || {};
  const status = st.status || 'pending';
  // A finished run's node that never started says so instead of "pending".
  const shown = finished && status === 'pending' ? badge('not run', 'pending') : badge(status);
  const bits = [h('span', { title: path }, nodeLabel(node)), shown];
  const counters = st.counters || {};
  if (node.kind === 'take_exposures' || node.count) {
    const done = counters.done || 0;
    bits.push(progressBar(node.count ? done / node.count : 0), h('span', { class: 'muted' }, `${done}/${node.count ?? '?'}`));
  }
  if (st.attempts > 1) bits.push(h('span', { class: 'muted' }, `attempt ${st.attempts}`));
  const li = h('li', { dataset: { path, status } },
    h('div', { class: `node${path === current ? ' current' : ''}` }, bits),
    st.error ? h('div', { class: 'error' }, st.error) : null);
  if (Array.isArray(node.items) && node.items.length) {
    li.append(h('ul', { class: 'tree' }, node.items.map((child, i) => treeNode(child, `${path}.items[${i}]`, state, current, finished))));
  }
  return li;
}

function renderRun(box, r, reload) {
  box.dataset.active = String(ACTIVE.has(r.status));
  box.dataset.runId = String(r.id);
  box.dataset.status = r.status;
  const act = (action) => async (ev) => {
    ev.target.disabled = true;
    if (action === 'abort' && !confirm(`Abort run ${r.id}? The end area still runs.`)) { ev.target.disabled = false; return; }
    try { await api(`/api/runs/${r.id}/${action}`, { method: 'POST' }); }
    catch (e) { notice(e.message); }
    reload();
  };
  const controls = h('div', { class: 'row' },
    h('button', { class: 'control', type: 'button', id: 'run-pause', disabled: r.status !== 'running' || r.pause_requested, onclick: act('pause') }, 'Pause'),
    h('button', { class: 'control', type: 'button', id: 'run-resume', disabled: !['paused', 'interrupted'].includes(r.status), onclick: act('resume') }, 'Resume'),
    h('button', { class: 'control danger', type: 'button', id: 'run-abort', disabled: !ACTIVE.has(r.status), onclick: act('abort') }, 'Abort'));
  const doc = r.document || {};
  const state = r.nodes || {};
  const areas = [['start', doc.start], ...(doc.targets || []).map((t, i) => [`targets[${i}]`, t]), ['end', doc.end]]
    .filter(([, n]) => n);
  const finished = !ACTIVE.has(r.status) && r.status !== 'interrupted';
  const at = r.current ? nodeAt(doc, r.current) : null;
  fill(box,
    h('div', { class: 'row' }, h('strong', {}, `#${r.id} ${r.name}`),
      h('span', { id: 'run-status' }, r.pause_requested ? badge('pausing', 'paused') : badge(r.status)),
      r.current ? h('span', { class: 'muted', id: 'run-current', title: r.current }, `at ${at ? nodeLabel(at) : r.current}`) : null),
    r.pause_requested ? h('div', { class: 'muted', id: 'run-pause-pending' }, r.status_text) : null,
    controls,
    h('ul', { class: 'tree tree-root' }, areas.map(([path, node]) => treeNode(node, path, state, r.current, finished))));
}

function renderFrame(box, f) {
  const img = h('img', { src: `/api/frames/${f.id}/preview.jpg`, alt: `frame ${f.id}`, id: 'frame-preview', dataset: { frameId: String(f.id) } });
  fill(box, 
    img,
    h('div', { class: 'row' }, h('strong', {}, `${f.frame_type} ${f.exposure_s} s`), f.filter_name ? `filter ${f.filter_name}` : '',
      badge(f.accepted ? 'accepted' : 'rejected', f.accepted ? 'ok' : 'rejected'), h('span', { class: 'muted' }, time(f.exposure_start_utc))),
    f.reject_reason ? h('div', { class: 'error' }, f.reject_reason) : null,
    figures([
      ['HFR', h('span', { id: 'frame-hfr' }, `${fmt(f.hfr_px, 2, ' px')} (${fmt(f.hfr_arcsec, 2, '″')})`)],
      ['Stars', h('span', { id: 'frame-stars' }, f.star_count ?? '—')],
      ['FWHM', fmt(f.fwhm_px, 2, ' px')],
      ['Eccentricity', fmt(f.eccentricity, 2)],
      ['Guiding RMS', fmt(f.guiding_rms_arcsec, 2, '″')],
      ['File', h('span', { class: 'muted' }, f.path)],
    ]));
}

function renderCharts(box, night, frames) {
  const points = (key) => frames.map((f) => ({ t: new Date(f.exposure_start_utc), v: f[key], bad: !f.accepted }));
  fill(box, 
    h('div', { class: 'muted' }, night ? `Night of ${night.night_date} (${night.state}): ${night.frames} frames, ${night.accepted_lights} accepted lights` : 'No night yet.'),
    h('div', { class: 'charts' },
      lineChart(points('hfr_px'), { label: 'HFR', unit: ' px', color: '#d9825b' }),
      lineChart(points('guiding_rms_arcsec'), { label: 'Guiding RMS', unit: '″', color: '#5b9bd9' })));
}

// Each stack of the newest night: its picture (a new URL per update, so the browser fetches
// the new one) and how much is in it.
function renderLive(box, stacks) {
  if (!stacks.length) { fill(box, h('p', { class: 'muted' }, 'No live stack yet.')); return; }
  const night = stacks[0].session_id;
  fill(box, h('div', { class: 'charts' }, ...stacks.filter((s) => s.session_id === night).map((s) =>
    h('div', { class: 'preview live-stack', dataset: { stack: s.name } },
      h('img', { src: `${s.preview_url}?v=${encodeURIComponent(s.updated || '')}`, alt: `live stack ${s.target} ${s.filter_name || ''}` }),
      h('div', { class: 'row' }, h('strong', {}, `${s.target} ${s.filter_name || ''}`),
        h('span', { class: 'muted' }, s.updated ? time(s.updated) : '')),
      figures([
        ['Frames', h('span', { class: 'live-frames' }, String(s.frames))],
        ['Rejected pixels', `${(100 * s.rejected_fraction).toFixed(2)} %`],
        ['Skipped', String(s.skipped)],
        ['Calibration', h('span', { class: 'muted' }, s.notes.join('; '))],
      ])))));
}

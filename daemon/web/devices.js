// A device as the dashboard shows it (its head, figures and buttons), and the observatory's
// devices: roof or dome, dust cover and flat panel, rotator, weather station, switches.
// Buttons carry the `control` class: the read role does not see them.
import { h, fill, fmt, badge, figures } from './dom.js';

export const OBSERVATORY_ROLES = ['dome', 'cover_calibrator', 'rotator', 'weather', 'switch'];
// Every command's path under /api/equipment/.
const OBSERVATORY_PATHS = ['roof/open', 'roof/close', 'dome/park', 'cover/open', 'cover/close', 'calibrator/on', 'calibrator/off', 'switch'];

const lower = (state) => (state ? state.toLowerCase().replaceAll('_', ' ') : '—');

/** One device: role, connection, name, the reading's age when old, its error, its figures. */
export function deviceBlock(d, pairs, { label, alwaysAge = false, controls = null } = {}) {
  const old = d.age_s !== null && (alwaysAge || d.age_s > 10);
  return h('div', { class: 'device', dataset: { role: d.role, connected: String(d.connected) } },
    h('div', { class: 'device-head' }, label || d.role.replace('_', ' '),
      badge(d.connected ? 'connected' : 'disconnected'),
      d.in_use ? badge('in use', 'running') : null,
      h('span', { class: 'muted' }, d.info && d.info.name ? d.info.name : ''),
      old ? h('span', { class: 'muted age' }, `read ${Math.round(d.age_s)} s ago`) : null),
    d.error ? h('div', { class: 'error' }, d.error) : null,
    figures(pairs),
    controls);
}

/** `act(path, body)` sends a command (POST /api/equipment/<path>) and refreshes;
 * `busy(path)` says whether that command is still on its way. A device whose reading did not
 * change keeps its block (and whatever is being typed in it); only its age is updated. */
export function renderObservatory(box, eq, act, busy) {
  const byRole = Object.fromEntries(eq.devices.map((d) => [d.role, d]));
  const present = OBSERVATORY_ROLES.filter((role) => byRole[role]);
  if (!present.length) { fill(box, h('p', { class: 'muted' }, 'No roof, cover, rotator, weather station or switch in this profile.')); return; }
  const button = (path, text, attrs = {}, body) => h('button', {
    class: 'control', type: 'button', id: path.replace('/', '-'), disabled: busy(path) || attrs.disabled,
    onclick: () => act(path, typeof body === 'function' ? body() : body),
  }, busy(path) ? `${text}…` : text);
  const render = { dome, cover_calibrator: cover, rotator, weather, switch: switches };
  const current = [...box.children];
  const sameLayout = current.length === present.length && current.every((el, i) => el.dataset.role === present[i]);
  const blocks = present.map((role, i) => {
    const d = byRole[role];
    const sig = JSON.stringify([d.connected, d.error, d.info, d.status, eq.dome_slaved, OBSERVATORY_PATHS.filter(busy)]);
    const kept = sameLayout ? current[i] : null;
    if (kept && kept.dataset.sig === sig) {
      const age = kept.querySelector('.age');
      if (age && d.age_s !== null) age.textContent = `read ${Math.round(d.age_s)} s ago`;
      return kept;
    }
    const block = render[role](d, { eq, button, act, busy });
    block.dataset.sig = sig;
    return block;
  });
  if (!sameLayout) { fill(box, blocks); return; }
  blocks.forEach((block, i) => { if (current[i] !== block) current[i].replaceWith(block); });
}

function dome(d, { eq, button }) {
  const st = d.status || {};
  const roof = d.info && d.info.can_set_azimuth === false;
  const pairs = [[roof ? 'Roof' : 'Shutter', h('span', { class: 'shutter' }, lower(st.shutter))]];
  if (!roof) {
    pairs.push(['Azimuth', `${fmt(st.azimuth_deg, 1, '°')}${st.slewing ? ' (slewing)' : ''}`]);
    pairs.push(['Slaved', eq.dome_slaved ? 'yes' : 'no']);
  }
  if (d.info && d.info.can_park) pairs.push(['Parked', st.at_park ? 'yes' : 'no']);
  const controls = h('div', { class: 'row' },
    button('roof/open', 'Open', { disabled: st.shutter === 'OPEN' }),
    button('roof/close', 'Close', { disabled: st.shutter === 'CLOSED' }),
    d.info && d.info.can_park ? button('dome/park', 'Park') : null);
  return deviceBlock(d, pairs, { label: roof ? 'roof' : 'dome', controls });
}

function cover(d, { button }) {
  const st = d.status || {};
  const max = d.info ? d.info.max_brightness : 0;
  const pairs = [['Cover', h('span', { class: 'cover-state' }, lower(st.cover))]];
  if (max > 0) pairs.push(['Panel', `${lower(st.calibrator)}${st.calibrator === 'OFF' ? '' : ` at ${st.brightness ?? '—'}/${max}`}`]);
  const level = h('input', { type: 'number', min: 0, max, value: Math.round(max / 2), class: 'control brightness', title: `brightness 0-${max}` });
  const controls = h('div', { class: 'row' },
    st.cover === 'NOT_PRESENT' ? null : [button('cover/open', 'Open cover'), button('cover/close', 'Close cover')],
    max > 0 ? [level, button('calibrator/on', 'Panel on', {}, () => ({ brightness: Number(level.value) })),
      button('calibrator/off', 'Panel off')] : null);
  return deviceBlock(d, pairs, { label: 'cover and panel', controls });
}

function rotator(d) {
  const st = d.status || {};
  return deviceBlock(d, [
    ['Angle', `${fmt(st.position_deg, 1, '°')}${st.is_moving ? ' (moving)' : ''}`],
    ['Mechanical', fmt(st.mechanical_position_deg, 1, '°')],
  ]);
}

function weather(d) {
  const w = d.status || {};
  const wind = w.wind_speed_m_s === null || w.wind_speed_m_s === undefined ? '—'
    : `${fmt(w.wind_speed_m_s, 1, ' m/s')}, gusts ${fmt(w.wind_gust_m_s, 1, ' m/s')}, from ${fmt(w.wind_direction_deg, 0, '°')}`;
  const pairs = [
    ['Temperature', fmt(w.temperature_c, 1, ' °C')],
    ['Humidity', fmt(w.humidity_pct, 0, ' %')],
    ['Dew point', fmt(w.dew_point_c, 1, ' °C')],
    ['Pressure', fmt(w.pressure_hpa, 0, ' hPa')],
    ['Wind', wind],
    ['Clouds', fmt(w.cloud_cover_pct, 0, ' %')],
    ['Rain', fmt(w.rain_rate_mm_h, 1, ' mm/h')],
    ['Sky', `${fmt(w.sky_temperature_c, 1, ' °C')}, ${fmt(w.sky_quality_mag_arcsec2, 2, ' mag/″²')}`],
  ];
  return deviceBlock(d, d.status ? pairs : [], { label: 'weather', alwaysAge: true });
}

function switches(d, { act, busy }) {
  const channels = (d.info && d.info.channels) || [];
  const values = (d.status && d.status.values) || [];
  const rows = channels.map((c, i) => {
    const value = values[i];
    const onOff = c.minimum === 0 && c.maximum === 1 && c.step === 1;
    const path = 'switch';
    let control = null;
    if (c.can_write && onOff) {
      control = h('button', { class: 'control', type: 'button', disabled: busy(path),
        onclick: () => {
          if (value === 1 && !confirm(`Turn off ${c.name}?`)) return;
          act(path, { channel: c.id, value: value === 1 ? 0 : 1 });
        } }, value === 1 ? 'Turn off' : 'Turn on');
    } else if (c.can_write) {
      const input = h('input', { type: 'number', class: 'control', min: c.minimum, max: c.maximum, step: c.step, value: value ?? c.minimum });
      control = [input, h('button', { class: 'control', type: 'button', disabled: busy(path),
        onclick: () => act(path, { channel: c.id, value: Number(input.value) }) }, 'Set')];
    }
    const shown = value === undefined ? '—' : onOff ? (value === 1 ? 'on' : 'off') : fmt(value, 0);
    return [h('dt', { title: c.description }, c.name), h('dd', { class: 'row', dataset: { channel: String(c.id) } }, h('span', { class: 'switch-value' }, shown), control)];
  });
  return deviceBlock(d, [], { label: 'switches', controls: h('dl', { class: 'figures' }, rows) });
}

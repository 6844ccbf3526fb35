// Framing: find a target by name or coordinates, draw its field from the star catalog
// (gnomonic projection, north up, east left) with the camera's field as a draggable, rotatable
// rectangle (or N x M mosaic panels), and add the framing to a template or a plan. When we
// have a plate-solved light of that area, its preview lies under the stars.
import { api, apiBlob, describe } from './api.js';
import { h, s, fill, fmt, dateTime } from './dom.js';
import { canControl } from './ui.js';

const SIZE = 600; // the chart's SVG units (square)
const RAD = Math.PI / 180;

/** RA hours as 00h42m44.35s and Dec degrees as +41d16m08.6s (the API's own forms). */
export function formatRa(hours) {
  let cs = Math.round(hours * 360000) % (24 * 360000);
  if (cs < 0) cs += 24 * 360000;
  const hh = Math.floor(cs / 360000); cs -= hh * 360000;
  const mm = Math.floor(cs / 6000); cs -= mm * 6000;
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(hh)}h${pad(mm)}m${pad(Math.floor(cs / 100))}.${pad(cs % 100)}s`;
}

export function formatDec(deg) {
  const sign = deg < 0 ? '-' : '+';
  let t = Math.round(Math.abs(deg) * 36000);
  const dd = Math.floor(t / 36000); t -= dd * 36000;
  const mm = Math.floor(t / 600); t -= mm * 600;
  const pad = (n) => String(n).padStart(2, '0');
  return `${sign}${pad(dd)}d${pad(mm)}m${pad(Math.floor(t / 10))}.${t % 10}s`;
}

// Gnomonic (tangent-plane) projection about (ra0, dec0), all in degrees / radians:
// xi points east, eta north, in radians of the tangent plane.
function project(ra0h, dec0, rah, dec) {
  const a0 = ra0h * 15 * RAD, d0 = dec0 * RAD, a = rah * 15 * RAD, d = dec * RAD;
  const cosc = Math.sin(d0) * Math.sin(d) + Math.cos(d0) * Math.cos(d) * Math.cos(a - a0);
  if (cosc <= 0.01) return null;
  return {
    xi: (Math.cos(d) * Math.sin(a - a0)) / cosc,
    eta: (Math.cos(d0) * Math.sin(d) - Math.sin(d0) * Math.cos(d) * Math.cos(a - a0)) / cosc,
  };
}

function unproject(ra0h, dec0, xi, eta) {
  const a0 = ra0h * 15 * RAD, d0 = dec0 * RAD;
  const rho = Math.hypot(xi, eta);
  if (rho === 0) return { ra: ra0h, dec: dec0 };
  const c = Math.atan(rho);
  const dec = Math.asin(Math.cos(c) * Math.sin(d0) + (eta * Math.sin(c) * Math.cos(d0)) / rho);
  const a = a0 + Math.atan2(xi * Math.sin(c), rho * Math.cos(d0) * Math.cos(c) - eta * Math.sin(d0) * Math.sin(c));
  let ra = (a / RAD / 15) % 24;
  if (ra < 0) ra += 24;
  return { ra, dec: dec / RAD };
}

/** A point (u along the frame's +x, v along +y, radians) of a frame centred at (ra, dec) with
 * position angle pa (the +y axis, east of north), on the sky. +x points west at pa = 0. */
function framePoint(ra, dec, pa, u, v) {
  const p = pa * RAD;
  const xi = u * -Math.cos(p) + v * Math.sin(p);
  const eta = u * Math.sin(p) + v * Math.cos(p);
  return unproject(ra, dec, xi, eta);
}

/** Mosaic panel centres, row by row from the top, east (left) to west, with their names. */
export function mosaicPanels(state) {
  const { cols, rows, overlap, widthDeg, heightDeg } = state;
  const stepU = 2 * Math.tan((widthDeg / 2) * RAD) * (1 - overlap / 100);
  const stepV = 2 * Math.tan((heightDeg / 2) * RAD) * (1 - overlap / 100);
  const panels = [];
  for (let j = 0; j < rows; j += 1) {
    for (let i = 0; i < cols; i += 1) {
      const u = (i - (cols - 1) / 2) * stepU;
      const v = ((rows - 1) / 2 - j) * stepV;
      const centre = framePoint(state.ra, state.dec, state.angle, u, v);
      panels.push({ ...centre, name: cols * rows > 1 ? `${state.name} Panel ${panels.length + 1}` : state.name });
    }
  }
  return panels;
}

export function mount() {
  const control = canControl();
  const state = {
    name: '', ra: null, dec: null, chartRa: null, chartDec: null, radius: 2,
    angle: 0, cols: 1, rows: 1, overlap: 10, widthDeg: null, heightDeg: null,
    chart: null, object: null,
    underlay: null, // { frame: the API's answer, url: the preview as an object URL }
  };
  let underlayAsked = null; // the centre and radius last asked about
  let underlaySeq = 0;

  const query = h('input', { id: 'framing-query', type: 'search', placeholder: 'M31, Orion Nebula, Vega or 00 42 44.3 +41 16 09', 'aria-label': 'Target name or coordinates' });
  const queryError = h('span', { class: 'field-error', id: 'framing-query-error', 'aria-live': 'polite' });
  const results = h('ul', { class: 'framing-results', id: 'framing-results' });
  const searchForm = h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); search(); } },
    query, h('button', { type: 'submit', class: 'primary' }, 'Find'), queryError);

  const field = (label, input, error) => h('label', { class: 'framing-field' }, h('span', {}, label), input, error || null);
  const nameInput = h('input', { id: 'framing-name', maxlength: 180, onchange: () => { state.name = nameInput.value.trim(); draw(); } });
  const raInput = h('input', { id: 'framing-ra', placeholder: '00 42 44.3', onchange: () => recentre() });
  const decInput = h('input', { id: 'framing-dec', placeholder: '+41 16 09', onchange: () => recentre() });
  const raError = h('span', { class: 'field-error', id: 'framing-ra-error', 'aria-live': 'polite' });
  const decError = h('span', { class: 'field-error', id: 'framing-dec-error', 'aria-live': 'polite' });
  const angleInput = h('input', { id: 'framing-angle', type: 'number', min: 0, max: 359.9, step: 0.1, value: 0,
    onchange: () => { state.angle = normalAngle(Number(angleInput.value) || 0); draw(); } });
  const echo = h('p', { id: 'framing-centre', class: 'muted' });

  const number = (id, value, attrs) => h('input', { id, type: 'number', value, ...attrs, onchange: () => readCamera() });
  const focal = number('framing-focal', '', { min: 1, step: 1 });
  const widthPx = number('framing-width-px', '', { min: 1, step: 1 });
  const heightPx = number('framing-height-px', '', { min: 1, step: 1 });
  const pixel = number('framing-pixel', '', { min: 0.1, step: 0.01 });
  const cols = number('framing-cols', 1, { min: 1, max: 10, step: 1 });
  const rows = number('framing-rows', 1, { min: 1, max: 10, step: 1 });
  const overlap = number('framing-overlap', 10, { min: 0, max: 90, step: 1 });
  const fovNote = h('p', { id: 'framing-fov', class: 'muted' });

  const svg = s('svg', { id: 'framing-chart', viewBox: `0 0 ${SIZE} ${SIZE}`, role: 'img', 'aria-label': 'Framing chart' });
  const chartNote = h('p', { class: 'muted', id: 'framing-chart-note' }, 'Find a target to draw its field.');
  const underlayToggle = h('input', { type: 'checkbox', id: 'framing-underlay-toggle', checked: true, onchange: () => draw() });
  const underlayLabel = h('span', {});
  const underlayField = h('label', { id: 'framing-underlay', class: 'framing-underlay', hidden: true }, underlayToggle, ' ', underlayLabel);

  const templateSelect = h('select', { id: 'framing-template', 'aria-label': 'Template' });
  const planSelect = h('select', { id: 'framing-plan', 'aria-label': 'Plan' });
  const addMessage = h('p', { id: 'framing-added', 'aria-live': 'polite' });
  const addTools = control ? h('div', { class: 'framing-add' },
    h('div', { class: 'row' }, templateSelect, h('button', { type: 'button', id: 'framing-add-template', class: 'primary', onclick: () => add('template') }, 'Add to template')),
    h('div', { class: 'row' }, planSelect, h('button', { type: 'button', id: 'framing-add-plan', onclick: () => add('plan') }, 'Add to plan')),
    addMessage) : null;

  const element = h('div', { class: 'grid framing' },
    h('section', { class: 'card wide' }, h('h2', {}, 'Find a target'), searchForm, results),
    h('section', { class: 'card wide framing-main' },
      h('h2', {}, 'Framing'),
      h('div', { class: 'framing-layout' },
        h('div', { class: 'framing-chart' }, svg, underlayField, chartNote),
        h('div', { class: 'framing-form' },
          field('Target name', nameInput),
          field('Centre RA', raInput, raError),
          field('Centre Dec', decInput, decError),
          echo,
          field('Position angle (°, east of north)', angleInput),
          h('fieldset', {}, h('legend', {}, 'Camera field'),
            field('Focal length (mm)', focal), field('Sensor width (px)', widthPx),
            field('Sensor height (px)', heightPx), field('Pixel size (µm)', pixel), fovNote),
          h('fieldset', {}, h('legend', {}, 'Mosaic'),
            field('Columns', cols), field('Rows', rows), field('Overlap (%)', overlap)),
          addTools))));

  let alive = true;
  loadCamera();
  if (control) loadDestinations();

  async function search() {
    queryError.textContent = '';
    const text = query.value.trim();
    if (!text) return;
    try {
      const found = await api(`/api/targets/search?q=${encodeURIComponent(text)}&limit=10`);
      if (!alive) return;
      fill(results, found.length ? found.map(resultItem) : h('li', { class: 'muted' }, `Nothing called “${text}”.`));
      if (found.length === 1) choose(found[0]);
    } catch (e) {
      queryError.textContent = describe(e.detail) || e.message;
    }
  }

  function resultItem(t) {
    const size = t.size_arcmin ? `${fmt(t.size_arcmin[0], 1)}′ × ${fmt(t.size_arcmin[1], 1)}′` : null;
    return h('li', { dataset: { name: t.name } },
      h('button', { type: 'button', class: 'framing-pick', onclick: () => choose(t) }, t.name),
      ' ', h('span', { class: 'muted' }, t.kind),
      t.aliases.length ? [' — ', t.aliases.slice(0, 4).join(', ')] : null,
      h('br'),
      h('small', {}, `${t.ra_hms} ${t.dec_dms} (${fmt(t.ra_hours, 5)} h, ${fmt(t.dec_deg, 5)}°)`,
        size ? ` · ${size}` : '', t.magnitude !== null ? ` · mag ${fmt(t.magnitude, 1)}` : ''));
  }

  function choose(t) {
    state.name = t.kind === 'coordinates' ? (state.name || 'Target') : t.name;
    state.object = t.kind === 'coordinates' ? null : t;
    nameInput.value = state.name;
    state.ra = t.ra_hours; state.dec = t.dec_deg;
    loadChart(t.ra_hours, t.dec_deg);
  }

  async function recentre() {
    raError.textContent = ''; decError.textContent = '';
    if (!raInput.value.trim() || !decInput.value.trim()) return;
    const params = `ra=${encodeURIComponent(raInput.value.trim())}&dec=${encodeURIComponent(decInput.value.trim())}`;
    try {
      const chart = await api(`/api/targets/chart?${params}&radius_deg=${chartRadius()}&mag_limit=${magLimit()}`);
      if (!alive) return;
      state.ra = chart.ra_hours; state.dec = chart.dec_deg;
      if (!state.name) { state.name = 'Target'; nameInput.value = state.name; }
      showChart(chart);
    } catch (e) {
      showFieldErrors(e);
    }
  }

  function showFieldErrors(e) {
    const detail = Array.isArray(e.detail) ? e.detail : [];
    let shown = false;
    for (const problem of detail) {
      const at = (problem.loc || [])[1];
      const slot = at === 'ra' ? raError : at === 'dec' ? decError : null;
      if (slot) { slot.textContent = problem.msg; shown = true; }
    }
    if (!shown) raError.textContent = describe(e.detail) || e.message;
  }

  async function loadChart(ra, dec) {
    try {
      const chart = await api(`/api/targets/chart?ra=${ra}&dec=${dec}&radius_deg=${chartRadius()}&mag_limit=${magLimit()}`);
      if (alive) showChart(chart);
    } catch (e) {
      chartNote.textContent = describe(e.detail) || e.message;
    }
  }

  function showChart(chart) {
    state.chart = chart;
    state.chartRa = chart.ra_hours; state.chartDec = chart.dec_deg; state.radius = chart.radius_deg;
    draw();
    loadUnderlay(chart);
  }

  // A solved light of ours near the chart's centre, laid under the stars; none: nothing shown.
  async function loadUnderlay(chart) {
    const params = `ra=${chart.ra_hours}&dec=${chart.dec_deg}&radius_deg=${chart.radius_deg}`;
    if (params === underlayAsked) return;
    underlayAsked = params;
    const seq = ++underlaySeq;
    let next = null;
    try {
      const frame = await api(`/api/targets/underlay?${params}`);
      const blob = await apiBlob(frame.preview_url, { accept: 'image/jpeg' });
      next = { frame, url: URL.createObjectURL(blob) };
    } catch (e) {
      next = null; // 404: no frame of ours there; anything else: the chart alone still serves
    }
    if (!alive || seq !== underlaySeq) {
      if (next) URL.revokeObjectURL(next.url);
      return;
    }
    if (!next) underlayAsked = null; // ask again next time: a frame may have been taken since
    if (state.underlay) URL.revokeObjectURL(state.underlay.url);
    state.underlay = next;
    underlayField.hidden = !next;
    if (next) underlayLabel.textContent = `our frame #${next.frame.frame_id} under the chart`;
    draw();
  }

  /** The preview as an SVG image placed by the affine map of three of its corners onto the
   * chart (top left, top right, bottom left), or null. */
  function underlayImage() {
    const u = state.underlay;
    if (!u || !underlayToggle.checked) return null;
    const f = u.frame;
    const [p0, p1, , p2] = f.corners;
    const q = [p0, p1, p2].map((c) => toScreen(c.ra_hours, c.dec_deg));
    if (q.some((p) => !p)) return null;
    const u1x = p1.x - p0.x, u1y = p1.y - p0.y, u2x = p2.x - p0.x, u2y = p2.y - p0.y;
    const v1x = q[1].x - q[0].x, v1y = q[1].y - q[0].y, v2x = q[2].x - q[0].x, v2y = q[2].y - q[0].y;
    const det = u1x * u2y - u2x * u1y;
    if (!det) return null;
    const a = (v1x * u2y - v2x * u1y) / det, c = (v2x * u1x - v1x * u2x) / det;
    const b = (v1y * u2y - v2y * u1y) / det, d = (v2y * u1x - v1y * u2x) / det;
    const e = q[0].x - a * p0.x - c * p0.y, g = q[0].y - b * p0.x - d * p0.y;
    const matrix = [a, b, c, d, e, g].map((v) => v.toFixed(6)).join(' ');
    return s('image', { id: 'framing-underlay-image', class: 'underlay', href: u.url, x: 0, y: 0,
      width: f.width_px, height: f.height_px, preserveAspectRatio: 'none', transform: `matrix(${matrix})`,
      dataset: { frameId: f.frame_id } });
  }

  function chartRadius() {
    const w = state.widthDeg || 1, hgt = state.heightDeg || 1;
    const span = Math.hypot(w * state.cols, hgt * state.rows) / 2;
    const size = state.object && state.object.size_arcmin ? state.object.size_arcmin[0] / 60 / 2 : 0;
    return Math.min(10, Math.max(0.25, 1.3 * Math.max(span, size))).toFixed(3);
  }

  function magLimit() {
    const r = Number(chartRadius());
    return r > 5 ? 7 : r > 2 ? 9 : 10;
  }

  async function loadCamera() {
    try {
      const fov = await api('/api/targets/fov');
      if (!alive) return;
      focal.value = fov.focal_length_mm.toFixed(0);
      widthPx.value = fov.width_px; heightPx.value = fov.height_px;
      pixel.value = fov.pixel_size_um;
    } catch (e) {
      fovNote.textContent = `${describe(e.detail) || e.message}.`;
    }
    readCamera(true);
  }

  function readCamera(initial) {
    const f = Number(focal.value), px = Number(pixel.value), w = Number(widthPx.value), hh = Number(heightPx.value);
    state.cols = clampInt(cols.value, 1, 10); state.rows = clampInt(rows.value, 1, 10);
    state.overlap = Math.min(90, Math.max(0, Number(overlap.value) || 0));
    if (f > 0 && px > 0 && w > 0 && hh > 0) {
      state.widthDeg = 2 * Math.atan((w * px) / 2000 / f) / RAD;
      state.heightDeg = 2 * Math.atan((hh * px) / 2000 / f) / RAD;
      const scale = (206.264806 * px) / f;
      fovNote.textContent = `${fmt(state.widthDeg, 2)}° × ${fmt(state.heightDeg, 2)}° at ${fmt(scale, 2)}″/px`;
    } else {
      state.widthDeg = null; state.heightDeg = null;
    }
    if (!initial && state.ra !== null) loadChart(state.chartRa ?? state.ra, state.chartDec ?? state.dec);
    else draw();
  }

  async function loadDestinations() {
    try {
      const [templates, plans] = await Promise.all([api('/api/templates'), api('/api/plans')]);
      if (!alive) return;
      fill(templateSelect, templates.length ? templates.map((t) => h('option', { value: t.id }, t.name)) : h('option', { value: '' }, 'no templates yet'));
      fill(planSelect, plans.length ? plans.map((p) => h('option', { value: p.id }, p.name)) : h('option', { value: '' }, 'no plans yet'));
    } catch (e) {
      addMessage.textContent = describe(e.detail) || e.message;
    }
  }

  // Chart drawing: screen position of a sky point (null behind the tangent plane).
  function toScreen(ra, dec) {
    const p = project(state.chartRa, state.chartDec, ra, dec);
    if (!p) return null;
    const scale = SIZE / 2 / Math.tan(state.radius * RAD);
    return { x: SIZE / 2 - p.xi * scale, y: SIZE / 2 - p.eta * scale };
  }

  function fromScreen(x, y) {
    const scale = SIZE / 2 / Math.tan(state.radius * RAD);
    return unproject(state.chartRa, state.chartDec, (SIZE / 2 - x) / scale, (SIZE / 2 - y) / scale);
  }

  function path(points) {
    const shown = points.map((p) => toScreen(p.ra, p.dec)).filter(Boolean);
    return shown.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ') + ' Z';
  }

  function rectangle(ra, dec, pa, wDeg, hDeg) {
    const u = Math.tan((wDeg / 2) * RAD), v = Math.tan((hDeg / 2) * RAD);
    const corners = [[-u, v], [u, v], [u, -v], [-u, -v]];
    const points = [];
    for (let k = 0; k < 4; k += 1) {
      const [u0, v0] = corners[k], [u1, v1] = corners[(k + 1) % 4];
      for (let t = 0; t < 8; t += 1) {
        points.push(framePoint(ra, dec, pa, u0 + ((u1 - u0) * t) / 8, v0 + ((v1 - v0) * t) / 8));
      }
    }
    return path(points);
  }

  function ellipse(t) {
    const a = Math.tan((t.size_arcmin[0] / 120) * RAD), b = Math.tan((t.size_arcmin[1] / 120) * RAD);
    const pa = (t.position_angle_deg || 0) * RAD;
    const points = [];
    for (let k = 0; k < 48; k += 1) {
      const q = (k / 48) * 2 * Math.PI;
      const major = a * Math.cos(q), minor = b * Math.sin(q);
      points.push(unproject(t.ra_hours, t.dec_deg,
        major * Math.sin(pa) + minor * Math.cos(pa), major * Math.cos(pa) - minor * Math.sin(pa)));
    }
    return path(points);
  }

  function draw() {
    const ready = state.chart && state.ra !== null;
    if (ready) {
      echo.textContent = `RA ${formatRa(state.ra)} (${fmt(state.ra, 5)} h) · Dec ${formatDec(state.dec)} (${fmt(state.dec, 5)}°) · PA ${fmt(state.angle, 1)}°`;
      if (document.activeElement !== raInput) raInput.value = formatRa(state.ra);
      if (document.activeElement !== decInput) decInput.value = formatDec(state.dec);
      if (document.activeElement !== angleInput) angleInput.value = state.angle.toFixed(1);
    }
    if (!ready) return;
    const chart = state.chart;
    const under = state.underlay && underlayToggle.checked ? state.underlay.frame : null;
    chartNote.textContent = `${chart.stars.length} stars, ${chart.objects.length} objects within ${fmt(chart.radius_deg, 2)}°. North up, east left.`
      + (under ? ` Under it: our frame #${under.frame_id}, taken ${dateTime(under.taken_at)}${under.filter ? ` through ${under.filter}` : ''}.` : '');
    const limit = chart.stars.reduce((m, st) => Math.max(m, st.magnitude), 0);
    const stars = chart.stars.map((st) => {
      const p = toScreen(st.ra_hours, st.dec_deg);
      return p && s('circle', { class: 'star', cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: Math.max(0.6, (limit + 1.5 - st.magnitude) * 0.55).toFixed(2) });
    });
    const objects = chart.objects.map((t) => {
      const p = toScreen(t.ra_hours, t.dec_deg);
      if (!p) return null;
      const main = state.object && state.object.name === t.name;
      const shape = t.size_arcmin
        ? s('path', { class: main ? 'dso main' : 'dso', d: ellipse(t) })
        : s('circle', { class: 'dso', cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: 4 });
      return s('g', { dataset: { object: t.name } }, shape,
        s('text', { class: main ? 'dso-label main' : 'dso-label', x: (p.x + 6).toFixed(1), y: (p.y - 6).toFixed(1) }, t.name));
    });
    const frame = drawFrame();
    fill(svg,
      s('rect', { class: 'sky', x: 0, y: 0, width: SIZE, height: SIZE }), underlayImage(),
      s('g', { class: 'stars' }, stars), s('g', { class: 'objects' }, objects), frame,
      s('text', { class: 'compass', x: SIZE / 2, y: 16, 'text-anchor': 'middle' }, 'N'),
      s('text', { class: 'compass', x: 10, y: SIZE / 2 }, 'E'));
  }

  function drawFrame() {
    if (!state.widthDeg) return null;
    const panels = mosaicPanels(state);
    const group = s('g', { id: 'framing-frame', class: 'frame', dataset: { angle: state.angle.toFixed(1), panels: panels.length } },
      panels.map((p, i) => s('path', { class: 'panel', dataset: { panel: i + 1 }, d: rectangle(p.ra, p.dec, state.angle, state.widthDeg, state.heightDeg) })));
    const centre = toScreen(state.ra, state.dec);
    const span = Math.tan(((state.heightDeg * (state.rows - (state.rows - 1) * state.overlap / 100)) / 2) * RAD) * 1.15;
    const tip = framePoint(state.ra, state.dec, state.angle, 0, span);
    const handle = toScreen(tip.ra, tip.dec);
    if (!centre || !handle) return group;
    group.append(
      s('line', { class: 'handle-line', x1: centre.x, y1: centre.y, x2: handle.x, y2: handle.y }),
      s('circle', { class: 'centre', cx: centre.x, cy: centre.y, r: 3 }),
      s('circle', { id: 'framing-rotate', class: 'handle', cx: handle.x, cy: handle.y, r: 9 }));
    return group;
  }

  // Dragging: the frame's inside moves its centre; the handle turns it.
  let drag = null;
  function svgPoint(event) {
    const m = svg.getScreenCTM();
    if (!m) return null;
    const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(m.inverse());
    return { x: p.x, y: p.y };
  }
  svg.addEventListener('pointerdown', (event) => {
    if (!state.chart || !state.widthDeg) return;
    const target = event.target;
    const p = svgPoint(event);
    const centre = toScreen(state.ra, state.dec);
    if (!p || !centre) return;
    if (target.id === 'framing-rotate') drag = { kind: 'rotate' };
    else if (target.closest && target.closest('#framing-frame')) drag = { kind: 'move', dx: centre.x - p.x, dy: centre.y - p.y };
    else return;
    svg.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  svg.addEventListener('pointermove', (event) => {
    if (!drag) return;
    const p = svgPoint(event);
    if (!p) return;
    if (drag.kind === 'move') {
      const sky = fromScreen(p.x + drag.dx, p.y + drag.dy);
      state.ra = sky.ra; state.dec = sky.dec;
    } else {
      const centre = toScreen(state.ra, state.dec);
      state.angle = normalAngle(Math.atan2(-(p.x - centre.x), -(p.y - centre.y)) / RAD);
    }
    draw();
  });
  const endDrag = () => { drag = null; };
  svg.addEventListener('pointerup', endDrag);
  svg.addEventListener('pointercancel', endDrag);

  async function add(where) {
    addMessage.textContent = ''; addMessage.className = '';
    if (state.ra === null || !state.widthDeg) {
      addMessage.textContent = 'Find a target and give the camera field first.';
      addMessage.className = 'error';
      return;
    }
    const select = where === 'template' ? templateSelect : planSelect;
    const id = Number(select.value);
    if (!id) {
      addMessage.textContent = `Choose a ${where} first.`;
      addMessage.className = 'error';
      return;
    }
    state.name = nameInput.value.trim() || state.name || 'Target';
    const targets = mosaicPanels(state).map((p) => ({
      name: p.name, ra_hours: Number(p.ra.toFixed(6)), dec_deg: Number(p.dec.toFixed(5)),
      rotation_deg: Number(normalAngle(state.angle).toFixed(1)) % 360,
    }));
    const body = where === 'template' ? { template_id: id, targets } : { plan_id: id, targets };
    try {
      const added = await api(`/api/targets/add-to-${where}`, { method: 'POST', body });
      if (!alive) return;
      const link = where === 'template' ? `#/templates/${added.id}` : `#/plans/${added.id}`;
      fill(addMessage, `Added ${added.added.join(', ')} to `, h('a', { href: link }, added.name), '.');
      addMessage.className = 'ok';
    } catch (e) {
      addMessage.textContent = describe(e.detail) || e.message;
      addMessage.className = 'error';
    }
  }

  return { element, unmount: () => { alive = false; if (state.underlay) URL.revokeObjectURL(state.underlay.url); } };
}

function normalAngle(deg) {
  const a = ((deg % 360) + 360) % 360;
  return a >= 359.95 ? 0 : a;
}

function clampInt(value, lo, hi) {
  const n = Math.round(Number(value));
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : lo;
}

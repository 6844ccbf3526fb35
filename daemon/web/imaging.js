// Imaging by hand: one exposure or a loop, the frame with its stars circled (fit or 100 %),
// its histogram with the auto-STF levels and its FITS header; autofocus with its V-curve drawn
// sample by sample from the event stream; "center here" on a point of the frame; the flats
// wizard. Frames taken here are kept as the night's LIGHT (and FLAT) frames.
import { api, apiBlob, describe } from './api.js';
import { h, s, fill, fmt } from './dom.js';
import { canControl, notice } from './ui.js';

const POLL_MS = 1000;
const BINS = 256;

export function mount() {
  const view = { frame: null, zoom: 'fit', centering: false, closed: false, url: null };
  const timers = [];
  let stream = null;

  const exposure = exposureForm(startLoop, stopLoop);
  const frameCard = h('section', { class: 'card wide', id: 'imaging-frame' });
  const histogram = h('div', { id: 'histogram' }, h('p', { class: 'muted' }, 'No frame yet.'));
  const header = h('div', { id: 'fits-header' }, h('p', { class: 'muted' }, 'No frame yet.'));
  const focus = focusPanel();
  const flats = flatsPanel();
  const element = h('div', { class: 'grid imaging' },
    h('section', { class: 'card' }, h('h2', {}, 'Exposure'), exposure.element),
    frameCard,
    h('section', { class: 'card' }, h('h2', {}, 'Histogram'), histogram),
    h('section', { class: 'card' }, h('h2', {}, 'FITS header'), header),
    h('section', { class: 'card' }, h('h2', {}, 'Autofocus'), focus.element),
    h('section', { class: 'card' }, h('h2', {}, 'Flats wizard'), flats.element));

  // The frame: a viewer whose stage holds the preview and an SVG of the same pixel box.
  const img = h('img', { alt: 'the frame', id: 'imaging-image' });
  const overlay = s('svg', { class: 'star-overlay', id: 'star-overlay' });
  const stage = h('div', { class: 'stage' }, img, overlay);
  const viewer = h('div', { class: 'viewer fit' }, stage);
  const figuresLine = h('div', { class: 'frame-figures', id: 'frame-figures' }, 'No frame yet.');
  const centerLine = h('div', { class: 'center-result', id: 'center-result', 'aria-live': 'polite' });
  const starsToggle = h('input', { type: 'checkbox', checked: true, onchange: () => overlay.classList.toggle('hidden', !starsToggle.checked) });
  const centerButton = h('button', { type: 'button', id: 'center-here', class: 'control', onclick: toggleCentering }, 'Center here…');
  fill(frameCard, h('h2', {}, 'Frame'),
    h('div', { class: 'toolbar' },
      h('button', { type: 'button', id: 'zoom-fit', onclick: () => setZoom('fit') }, 'Fit'),
      h('button', { type: 'button', id: 'zoom-100', onclick: () => setZoom('100') }, '100 %'),
      h('label', { class: 'inline' }, starsToggle, ' stars'),
      centerButton),
    figuresLine, centerLine, viewer);
  stage.addEventListener('click', clickedFrame);

  function setZoom(zoom) {
    view.zoom = zoom;
    viewer.classList.toggle('fit', zoom === 'fit');
    viewer.classList.toggle('actual', zoom === '100');
    if (view.frame && zoom === '100') stage.style.width = `${view.frame.width_px}px`;
    else stage.style.width = '';
  }

  function toggleCentering() {
    view.centering = !view.centering;
    viewer.classList.toggle('picking', view.centering);
    centerButton.textContent = view.centering ? 'Click a point of the frame… (cancel)' : 'Center here…';
  }

  async function clickedFrame(event) {
    if (!view.centering || !view.frame) return;
    const box = stage.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * view.frame.width_px;
    const y = ((event.clientY - box.top) / box.height) * view.frame.height_px;
    toggleCentering();
    centerLine.textContent = `Solving frame ${view.frame.id} and centering on (${x.toFixed(0)}, ${y.toFixed(0)})…`;
    centerLine.className = 'center-result';
    try {
      const done = await api('/api/imaging/center', { method: 'POST', body: { frame_id: view.frame.id, x, y } });
      Object.assign(centerLine.dataset, { x: String(done.x), y: String(done.y), ra: String(done.ra_hours), dec: String(done.dec_deg) });
      centerLine.textContent = done.success
        ? `Centered on RA ${done.ra_hours.toFixed(4)} h, Dec ${done.dec_deg.toFixed(4)}° in ${done.attempts} attempt(s), ${fmt(done.final_error_arcsec, 0, '"')} off.`
        : `Not centered: ${done.reason}`;
      centerLine.classList.add(done.success ? 'good' : 'bad');
    } catch (e) {
      centerLine.textContent = `Not centered: ${e.message}`;
      centerLine.classList.add('bad');
    }
  }

  async function showFrame(id) {
    if (view.frame && view.frame.id === id) return;
    try {
      const [frame, stars, hist, cards, blob] = await Promise.all([
        api(`/api/frames/${id}`), api(`/api/frames/${id}/stars`), api(`/api/frames/${id}/histogram`),
        api(`/api/frames/${id}/header`), apiBlob(`/api/frames/${id}/preview.jpg`, { accept: 'image/jpeg' })]);
      if (view.closed) return;
      view.frame = frame;
      if (view.url) URL.revokeObjectURL(view.url);
      view.url = URL.createObjectURL(blob);
      img.src = view.url;
      frameCard.dataset.frameId = String(id);
      fill(figuresLine, `Frame ${frame.id} · ${frame.frame_type} ${frame.filter_name || ''} ${frame.exposure_s} s · `,
        h('span', { id: 'star-count' }, `${stars.star_count} stars`), ` · HFR ${fmt(stars.hfr_px, 2, ' px')}`);
      drawStars(overlay, stars);
      setZoom(view.zoom);
      const zoomed = await api(`/api/frames/${id}/histogram?upper_adu=${brightEnd(hist)}`);
      if (view.closed) return;
      drawHistogram(histogram, hist, zoomed);
      showHeader(header, cards);
    } catch (e) {
      notice(`Could not show frame ${id}: ${e.message}`);
    }
  }

  async function startLoop(body) {
    await api('/api/imaging/loop', { method: 'POST', body });
    pollLoop();
  }

  async function stopLoop() {
    try { exposure.show(await api('/api/imaging/loop', { method: 'DELETE' })); }
    catch (e) { notice(e.message); }
  }

  async function pollLoop() {
    try {
      const state = await api('/api/imaging/loop');
      if (view.closed) return;
      exposure.show(state);
      if (state.last_frame) await showFrame(state.last_frame.id);
      if (state.state === 'running') timers.push(setTimeout(pollLoop, POLL_MS));
    } catch (e) { notice(e.message); }
  }

  async function firstFrame() {
    try {
      const loop = await api('/api/imaging/loop');
      exposure.show(loop);
      if (loop.last_frame) await showFrame(loop.last_frame.id);
      else await showFrame((await api('/api/frames/latest?frame_type=LIGHT')).id);
      if (loop.state === 'running') pollLoop();
    } catch (e) {
      if (e.status !== 404) notice(e.message);
    }
  }

  async function loadFilters() {
    try {
      const equipment = await api('/api/equipment');
      const wheel = equipment.devices.find((d) => d.role === 'filter_wheel');
      const names = wheel && wheel.info ? wheel.info.names : [];
      exposure.setFilters(names);
      flats.setFilters(names);
    } catch (e) { notice(e.message); }
  }

  // Autofocus: the samples come as events while the request runs.
  focus.onRun(async (body) => {
    if (stream) stream.close();
    stream = new EventSource('/api/events/stream?source=autofocus');
    await new Promise((resolve) => { stream.onopen = resolve; setTimeout(resolve, 3000); });
    stream.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.data && event.data.sample) focus.addPoint(event.data.sample);
    };
    try {
      return await api('/api/autofocus', { method: 'POST', body });
    } finally {
      stream.close();
      stream = null;
    }
  });

  flats.onPoll((fn) => timers.push(setTimeout(fn, POLL_MS)));

  loadFilters();
  firstFrame();
  flats.refresh();
  if (!canControl()) for (const el of element.querySelectorAll('.control')) el.hidden = true;

  return {
    element,
    unmount() {
      view.closed = true;
      flats.close();
      timers.forEach(clearTimeout);
      if (stream) stream.close();
      if (view.url) URL.revokeObjectURL(view.url);
    },
  };
}

/** A labelled input with its error line: the API's message for that field lands there. */
function field(name, label, input) {
  input.name = name;
  return h('label', { class: 'field', dataset: { field: name } }, h('span', {}, label), input,
    h('span', { class: 'field-error', 'aria-live': 'polite' }));
}

function numberInput(value, attrs = {}) {
  return h('input', { type: 'number', value: value === null ? '' : String(value), ...attrs });
}

/** Show a refusal beside the fields it names; what names no field goes to `general`. */
function showErrors(form, general, error) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  general.textContent = '';
  const detail = error.detail;
  const problems = Array.isArray(detail) ? detail : [];
  let placed = false;
  for (const problem of problems) {
    const name = (problem.loc || []).filter((p) => p !== 'body')[0];
    const slot = name !== undefined && form.querySelector(`[data-field="${name}"] .field-error`);
    if (slot) { slot.textContent = problem.msg; placed = true; }
  }
  if (!placed) general.textContent = describe(detail) || error.message;
}

function optionalNumber(input) {
  return input.value === '' ? null : Number(input.value);
}

function exposureForm(start, stop) {
  const time = numberInput(2, { step: 'any', min: 0 });
  const filter = h('select', {}, h('option', { value: '' }, '(current)'));
  const binning = h('select', {}, [1, 2, 3, 4].map((b) => h('option', { value: String(b) }, `${b}×${b}`)));
  const gain = numberInput(null, { min: 0, placeholder: 'camera default' });
  const count = numberInput(null, { min: 1, placeholder: 'until stopped' });
  const state = h('div', { id: 'loop-state', class: 'muted' }, 'Idle.');
  const error = h('div', { class: 'form-error', 'aria-live': 'polite' });
  const form = h('form', { class: 'imaging-form control', id: 'exposure-form' },
    h('div', { class: 'form-grid' },
      field('exposure_s', 'Exposure (s)', time), field('filter_name', 'Filter', filter),
      field('binning', 'Binning', binning), field('gain', 'Gain', gain), field('count', 'Frames', count)),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', id: 'take-one', onclick: () => send(1) }, 'Take one'),
      h('button', { type: 'button', id: 'loop-start', onclick: () => send(optionalNumber(count)) }, 'Loop'),
      h('button', { type: 'button', id: 'loop-stop', onclick: stop }, 'Stop')),
    error);

  async function send(frames) {
    const body = { exposure_s: Number(time.value), filter_name: filter.value || null,
      binning: Number(binning.value), gain: optionalNumber(gain), count: frames };
    try {
      showErrors(form, error, { detail: null });
      await start(body);
    } catch (e) { showErrors(form, error, e); }
  }

  return {
    element: h('div', {}, form, state),
    setFilters(names) {
      fill(filter, h('option', { value: '' }, '(current)'), names.map((n) => h('option', { value: n }, n)));
    },
    show(loop) {
      state.dataset.state = loop.state;
      const last = loop.last_frame;
      state.textContent = `${loop.state}: ${loop.frames_taken} frame(s)`
        + (loop.count ? ` of ${loop.count}` : loop.state === 'running' ? ', until stopped' : '')
        + (last ? ` · last: frame ${last.id}, ${last.star_count ?? '—'} stars, HFR ${fmt(last.hfr_px, 2, ' px')}` : '')
        + (loop.message ? ` · ${loop.message}` : '');
    },
  };
}

/** Circles of 3 HFR (at least 6 px) at the stars, in the frame's own pixel coordinates. */
function drawStars(svg, stars) {
  svg.setAttribute('viewBox', `0 0 ${stars.width_px} ${stars.height_px}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  fill(svg, stars.stars.map((star) => s('circle', {
    class: 'star', cx: star.x + 0.5, cy: star.y + 0.5, r: Math.max(6, 3 * star.hfr_px),
  }, s('title', {}, `HFR ${star.hfr_px.toFixed(2)} px at (${star.x.toFixed(0)}, ${star.y.toFixed(0)})`))));
}

function summed(hist) {
  return hist.channels[0].map((_, i) => hist.channels.reduce((sum, c) => sum + c[i], 0));
}

/** Half again the level below which 99.9 % of the pixels lie: linear data sits low. */
function brightEnd(hist) {
  const counts = summed(hist);
  const total = counts.reduce((a, b) => a + b, 0);
  let cumulative = 0, last = 0;
  while (last < BINS - 1 && (cumulative += counts[last]) < 0.999 * total) last += 1;
  return Math.min(hist.upper_adu, ((last + 1) / BINS) * hist.upper_adu * 1.5);
}

/** The histogram (log counts) of `zoomed`'s range, with the auto-STF levels as handles. */
function drawHistogram(box, hist, zoomed) {
  const W = 512, H = 150;
  const counts = summed(zoomed);
  const span = zoomed.upper_adu;
  const peak = Math.log10(Math.max(...counts) + 1);
  const x = (bin) => (bin / BINS) * W;
  const level = (fraction) => (fraction * hist.full_scale_adu / span) * W;
  const svg = s('svg', { class: 'histogram', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'histogram',
    dataset: { upper: String(span) } });
  counts.forEach((c, i) => {
    const height = peak > 0 ? (Math.log10(c + 1) / peak) * (H - 4) : 0;
    svg.append(s('rect', { class: 'bar', x: x(i), y: H - height, width: W / BINS, height }));
  });
  const mid = hist.shadows + hist.midtones * (hist.highlights - hist.shadows);
  const handles = [['shadows', hist.shadows], ['midtones', mid], ['highlights', hist.highlights]];
  for (const [name, fraction] of handles) {
    const px = Math.min(W - 1, level(fraction));
    svg.append(s('line', { class: `handle ${name}`, x1: px, x2: px, y1: 0, y2: H },
      s('title', {}, `${name}: ${(fraction * hist.full_scale_adu).toFixed(0)} ADU`)));
    svg.append(s('polygon', { class: `handle ${name}`, points: `${px - 5},${H} ${px + 5},${H} ${px},${H - 9}` }));
  }
  const adu = (fraction) => `${(fraction * hist.full_scale_adu).toFixed(0)} ADU`;
  fill(box, svg,
    h('div', { class: 'axis-labels muted' }, h('span', {}, '0'), h('span', {}, `${span.toFixed(0)} ADU (log counts)`)),
    h('dl', { class: 'figures', id: 'histogram-figures', dataset: { median: String(hist.median_adu) } },
      h('dt', {}, 'Median'), h('dd', { id: 'histogram-median' }, `${hist.median_adu.toFixed(0)} ADU`),
      h('dt', {}, 'Min / max'), h('dd', {}, `${hist.min_adu.toFixed(0)} / ${hist.max_adu.toFixed(0)} ADU`),
      h('dt', {}, 'STF shadows'), h('dd', { id: 'stf-shadows' }, `${hist.shadows.toFixed(5)} (${adu(hist.shadows)})`),
      h('dt', {}, 'STF midtones'), h('dd', { id: 'stf-midtones' }, `${hist.midtones.toFixed(5)} (at ${adu(mid)})`),
      h('dt', {}, 'STF highlights'), h('dd', {}, `${hist.highlights.toFixed(3)}`)));
}

function showHeader(box, cards) {
  fill(box, h('details', {},
    h('summary', {}, `${cards.length} cards`),
    h('div', { class: 'table-scroll' }, h('table', { class: 'fits-cards' },
      h('tbody', {}, cards.map((c) => h('tr', {}, h('th', {}, c.keyword), h('td', {}, c.value))))))));
}

function focusPanel() {
  const step = numberInput(100, { min: 1 });
  const out = numberInput(4, { min: 2, max: 10 });
  const time = numberInput(2, { step: 'any', min: 0 });
  const state = h('div', { id: 'focus-state', class: 'muted' }, 'Not run yet.');
  const error = h('div', { class: 'form-error', 'aria-live': 'polite' });
  const chart = h('div', { id: 'v-curve' });
  const points = [];
  let fit = null;
  let run = null;
  const button = h('button', { type: 'button', id: 'autofocus-run', onclick: go }, 'Run autofocus');
  const form = h('form', { class: 'imaging-form control', id: 'focus-form' },
    h('div', { class: 'form-grid' }, field('step_size', 'Step size', step),
      field('steps_out', 'Steps out', out), field('exposure_s', 'Exposure (s)', time)),
    h('div', { class: 'buttons' }, button), error);

  async function go() {
    points.length = 0;
    fit = null;
    draw();
    button.disabled = true;
    state.textContent = 'Running…';
    showErrors(form, error, { detail: null });
    try {
      const done = await run({ step_size: Number(step.value), steps_out: Number(out.value), exposure_s: Number(time.value) });
      fit = done.report.fit;
      // The report's own points are the whole curve, whatever the stream delivered.
      points.length = 0;
      points.push(...done.report.points);
      draw();
      state.textContent = done.success
        ? `Focused at ${done.final_position} (HFR ${fmt(fit.best_hfr_px, 2, ' px')}, R² ${fit.r_squared.toFixed(3)}`
          + (done.report.left_out_position == null ? ').'
            : `; the sample at ${done.report.left_out_position} left out, far off the curve).`)
        : `Failed: ${done.reason} (back at ${done.final_position}).`;
    } catch (e) {
      showErrors(form, error, e);
      state.textContent = 'Not run.';
    } finally {
      button.disabled = false;
    }
  }

  function draw() {
    chart.dataset.points = String(points.length);
    fill(chart, vCurve(points, fit));
  }

  draw();
  return {
    element: h('div', {}, form, state, chart),
    onRun(fn) { run = fn; },
    addPoint(point) {
      points.push(point);
      draw();
    },
  };
}

function vCurve(points, fit) {
  const W = 420, H = 200, L = 40, B = 22;
  const svg = s('svg', { class: 'v-curve', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'V-curve' });
  const usable = points.filter((p) => p.hfr_px !== null);
  if (usable.length === 0) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'HFR by focuser position'));
    return svg;
  }
  const xs = usable.map((p) => p.position), ys = usable.map((p) => p.hfr_px);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const y1 = Math.max(...ys) * 1.1;
  const px = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - 10);
  const py = (v) => H - B - (v / y1) * (H - B - 10);
  svg.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W - 10, y2: H - B }));
  svg.append(s('line', { class: 'axis', x1: L, y1: 10, x2: L, y2: H - B }));
  if (fit) {
    const steps = 60;
    const path = [];
    for (let i = 0; i <= steps; i += 1) {
      const v = x0 + ((x1 - x0) * i) / steps;
      path.push(`${i ? 'L' : 'M'}${px(v).toFixed(1)},${py(fitHfr(fit, v)).toFixed(1)}`);
    }
    svg.append(s('path', { class: 'fit', d: path.join(' ') }));
    svg.append(s('line', { class: 'best', x1: px(fit.best_position), x2: px(fit.best_position), y1: 10, y2: H - B }));
  }
  for (const p of usable) {
    svg.append(s('circle', { class: 'sample', cx: px(p.position), cy: py(p.hfr_px), r: 4 },
      s('title', {}, `${p.position}: HFR ${p.hfr_px.toFixed(2)} px, ${p.star_count} stars`)));
  }
  svg.append(s('text', { x: L, y: H - 6 }, String(Math.round(x0))));
  svg.append(s('text', { x: W - 10, y: H - 6, 'text-anchor': 'end' }, String(Math.round(x1))));
  svg.append(s('text', { x: L - 4, y: py(y1 / 1.1) + 4, 'text-anchor': 'end' }, (y1 / 1.1).toFixed(1)));
  return svg;
}

function fitHfr(fit, x) {
  const c = fit.coefficients;
  if (fit.model === 'hyperbola') return c[0] * Math.sqrt(1 + ((x - c[2]) / c[1]) ** 2);
  return c.reduce((sum, k) => sum * x + k, 0);
}

function flatsPanel() {
  const filters = h('div', { class: 'filter-choices' });
  const count = numberInput(10, { min: 1 });
  const source = h('select', {}, h('option', { value: 'panel' }, 'flat panel'), h('option', { value: 'sky' }, 'sky'));
  const target = numberInput(32000, { min: 1, max: 65535 });
  const tolerance = numberInput(0.1, { step: 'any', min: 0 });
  const state = h('div', { id: 'flats-state' }, h('p', { class: 'muted' }, 'Not run yet.'));
  const error = h('div', { class: 'form-error', 'aria-live': 'polite' });
  let schedule = null;
  let closed = false;
  const form = h('form', { class: 'imaging-form control', id: 'flats-form' },
    h('div', { class: 'field-group', dataset: { field: 'filters' } }, h('span', { class: 'muted' }, 'Filters (none: the current one)'),
      filters, h('span', { class: 'field-error', 'aria-live': 'polite' })),
    h('div', { class: 'form-grid' }, field('count', 'Flats per filter', count), field('source', 'Light', source),
      field('target_adu', 'Target median (ADU)', target), field('tolerance', 'Tolerance', tolerance)),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', id: 'flats-start', onclick: start }, 'Start'),
      h('button', { type: 'button', id: 'flats-stop', onclick: stop }, 'Stop')),
    error);

  async function start() {
    const body = {
      filters: [...filters.querySelectorAll('input:checked')].map((i) => i.value),
      count: Number(count.value), source: source.value,
      target_adu: Number(target.value), tolerance: Number(tolerance.value),
    };
    showErrors(form, error, { detail: null });
    try {
      show(await api('/api/imaging/flats', { method: 'POST', body }));
      refresh();
    } catch (e) { showErrors(form, error, e); }
  }

  async function stop() {
    try { show(await api('/api/imaging/flats', { method: 'DELETE' })); }
    catch (e) { notice(e.message); }
  }

  async function refresh() {
    try {
      const job = await api('/api/imaging/flats');
      if (closed) return;
      show(job);
      if (job.state === 'running' && schedule) schedule(refresh);
    } catch (e) { notice(e.message); }
  }

  function show(job) {
    state.dataset.state = job.state;
    if (job.state === 'idle') return;
    fill(state,
      h('p', {}, `${job.state}${job.message ? `: ${job.message}` : ''}`),
      h('div', { class: 'table-scroll' }, h('table', { class: 'flats-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Filter'), h('th', {}, 'Trials (s → median ADU)'), h('th', {}, 'Exposure'), h('th', {}, 'Flats'))),
        h('tbody', {}, job.filters.map((f) => h('tr', { dataset: { filter: f.filter_name || '' } },
          h('td', {}, f.filter_name || '(current)'),
          h('td', { class: 'wrap' }, f.trials.map((t) => `${t.exposure_s.toFixed(3)} → ${t.median_adu.toFixed(0)}`).join(', ')),
          h('td', { class: 'exposure' }, f.exposure_s === null ? '…' : `${f.exposure_s.toFixed(3)} s${f.brightness ? ` @ ${f.brightness}` : ''}`),
          h('td', { class: 'taken' }, `${f.frame_ids.length} / ${job.count}`)))))));
  }

  return {
    element: h('div', {}, form, state),
    setFilters(names) {
      fill(filters, names.map((n) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', value: n }), ` ${n}`)));
    },
    onPoll(fn) { schedule = fn; },
    refresh,
    close() { closed = true; },
  };
}

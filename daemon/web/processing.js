// Processing jobs: state, stage and progress. For a done job, its finished pictures large,
// with their notes, a strip of the previews after every step, and the stretch edited live
// on the histogram of the picture's linear proxy. The lightbox draws the background step's
// samples over its preview, kept green and rejected red, as DBE shows them.
import { api, apiBlob, describe } from './api.js';
import { h, s, fill, clear, dateTime, badge, progressBar } from './dom.js';
import { canControl } from './ui.js';
import { Form } from './equipment.js';

// The stretch step kinds of a recipe (processing/recipe.py, STRETCH_KINDS): the first of
// them is the step the edited histogram replaces.
const STRETCH_KINDS = new Set(['stretch_stf', 'histogram', 'stretch_arcsinh', 'ghs']);
const PREVIEW_DELAY_MS = 150;
const MIDTONES_LIMITS = [1e-6, 1 - 1e-6];

export function mount() {
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const pictures = h('section', { class: 'card wide', id: 'job-pictures', hidden: true });
  const result = h('section', { class: 'card wide', id: 'job-result', hidden: true });
  const lightbox = makeLightbox();
  const element = h('div', { class: 'grid' },
    canControl() ? queueForm((id) => followJob(id)) : null,
    h('section', { class: 'card wide' }, h('h2', {}, 'Processing jobs'), box), result, pictures, lightbox.element);
  // `chosen`: the job whose pictures are shown (the newest done one until a person picks
  // one); `follow`: a job queued from this page, shown once it is done.
  const view = { chosen: null, shown: null, follow: null, editors: [], jobs: [] };
  let timer = null;
  let closed = false;

  function showJob(job) {
    for (const editor of view.editors) editor.dispose();
    view.editors = [];
    view.shown = job.id;
    const context = { lightbox, editors: view.editors, queued: followJob };
    const recipe = job.config && job.config.recipe ? ` · recipe "${job.config.recipe.name}"` : '';
    fill(result, resultView(job));
    result.dataset.jobId = String(job.id);
    result.hidden = false;
    if (!hasPictures(job)) { pictures.hidden = true; fill(pictures); delete pictures.dataset.jobId; return; }
    fill(pictures, h('h2', {}, `Pictures of job #${job.id}`, h('span', { class: 'muted' }, recipe)),
      job.outputs.finished.map((entry) => pictureView(job, entry, context)));
    pictures.dataset.jobId = String(job.id);
    pictures.hidden = false;
  }

  function choose(jobs) {
    const done = jobs.filter((j) => j.state === 'done' && (hasPictures(j) || hasGroups(j)));
    if (view.follow !== null) {
      const followed = done.find((j) => j.id === view.follow);
      if (followed) { view.chosen = followed.id; view.follow = null; }
    }
    if (view.chosen === null && done.length) view.chosen = done[0].id;
    const job = done.find((j) => j.id === view.chosen);
    if (job && job.id !== view.shown) showJob(job);
  }

  function followJob(id) {
    view.follow = id;
    load();
  }

  async function cancel(job) {
    try { await api(`/api/processing/jobs/${job.id}/cancel`, { method: 'POST' }); }
    catch (e) { window.alert(`Job #${job.id} not cancelled: ${e.message}`); }
    load();
  }

  function pick(job) {
    view.chosen = job.id;
    view.follow = null;
    showJob(job);
    render(box, view.jobs, view.shown, pick, cancel);
    pictures.scrollIntoView({ behavior: 'smooth', block: 'start' });
  }

  // One load at a time: a load asked for meanwhile (a job just queued) runs right after.
  let loading = false;
  let reload = false;
  async function load() {
    if (loading) { reload = true; return; }
    loading = true;
    clearTimeout(timer);
    let jobs = null;
    try { jobs = await api('/api/processing/jobs'); }
    catch (e) { if (!closed) fill(box, h('p', { class: 'error' }, e.message)); }
    loading = false;
    if (closed) return;
    if (jobs) {
      view.jobs = jobs;
      choose(jobs);
      render(box, jobs, view.shown, pick, cancel);
    }
    if (reload) { reload = false; load(); return; }
    const busy = (jobs || []).some((j) => j.state === 'queued' || j.state === 'running');
    timer = setTimeout(load, busy ? 2000 : 10000);
  }
  load();
  return {
    element,
    unmount() {
      closed = true;
      clearTimeout(timer);
      for (const editor of view.editors) editor.dispose();
      lightbox.dispose();
    },
  };
}

function hasGroups(job) {
  return Boolean(job.outputs && Array.isArray(job.outputs.groups) && job.outputs.groups.length);
}

function hasPictures(job) {
  return Boolean(job.outputs && Array.isArray(job.outputs.finished) && job.outputs.finished.length);
}

/** Where a job's frames come from: a night, a target across nights, a folder, a job. */
function jobSource(job) {
  const config = job.config || {};
  if (job.session_id) return `night #${job.session_id}`;
  if (job.target_id) return `${config.target || `target #${job.target_id}`} across nights${config.filter ? ` · ${config.filter}` : ''}`;
  if (job.folder) return job.folder;
  return config.finish_of ? `finished again from job #${config.finish_of}` : '';
}

function render(box, jobs, shown, pick, cancel) {
  if (!jobs.length) { fill(box, h('p', { class: 'muted' }, 'No processing job yet: a finished run queues one per night.')); return; }
  fill(box, jobs.map((j) => {
    const groups = (j.outputs && j.outputs.groups) || [];
    // A group that kept fewer than half of its lights: say so above the previews.
    const warnings = (j.outputs && j.outputs.warnings) || [];
    return h('div', { class: `device${j.id === shown ? ' selected' : ''}`, dataset: { jobId: String(j.id) } },
      h('div', { class: 'row' }, h('strong', {}, `Job #${j.id}`), badge(j.state),
        h('span', { class: 'muted' }, jobSource(j)),
        h('span', {}, j.stage || ''), progressBar(j.progress), h('span', { class: 'muted' }, `${Math.round(j.progress * 100)} %`),
        h('span', { class: 'muted' }, `queued ${dateTime(j.created_at)}${j.finished_at ? `, done ${dateTime(j.finished_at)}` : ''}`),
        j.state === 'done' && (hasPictures(j) || hasGroups(j)) && j.id !== shown
          ? h('button', { type: 'button', class: 'show-pictures', onclick: () => pick(j) }, 'Show result') : null,
        canControl() && (j.state === 'queued' || j.state === 'running')
          ? h('button', { type: 'button', class: 'cancel-job', onclick: () => cancel(j) }, 'Cancel') : null),
      j.outputs && j.outputs.executor ? h('div', { class: 'muted executor' }, `stacked on ${j.outputs.executor}`) : null,
      j.error ? h('div', { class: 'error' }, j.error) : null,
      warnings.map((w) => h('div', { class: 'warning', role: 'alert', style: 'color: var(--warn); font-weight: bold' }, `⚠ ${w}`)),
      groups.length ? h('div', { class: 'thumbs' }, groups.map((g) => h('figure', {},
        j.state === 'done' ? h('img', { src: `/api/processing/jobs/${j.id}/groups/${encodeURIComponent(g.name)}/jpeg`, alt: g.name, loading: 'lazy' }) : null,
        h('figcaption', {}, `${g.name}: ${g.integrated ?? '?'} lights `,
          h('a', { href: `/api/processing/jobs/${j.id}/groups/${encodeURIComponent(g.name)}/fits` }, 'FITS'), ' ',
          h('a', { href: `/api/processing/jobs/${j.id}/groups/${encodeURIComponent(g.name)}/xisf` }, 'XISF'))))) : null);
  }));
}

/** The URL of a file of the job (the summary's paths are absolute, inside its out_dir). */
function fileUrl(job, path) {
  if (!path || !job.out_dir || !path.startsWith(`${job.out_dir}/`)) return null;
  const relative = path.slice(job.out_dir.length + 1).split('/').map(encodeURIComponent).join('/');
  return `/api/processing/jobs/${job.id}/files/${relative}`;
}

const DOWNLOADS = [['fits', 'FITS'], ['xisf', 'XISF'], ['tiff', 'TIFF'], ['jpeg', 'JPEG'], ['png', 'PNG'], ['recipe', 'recipe']];

function pictureView(job, entry, context) {
  const title = entry.target && entry.target !== entry.name ? `${entry.target} (${entry.name})` : entry.target || entry.name;
  if (entry.error) {
    return h('article', { class: 'picture failed', dataset: { name: entry.name || '' } },
      h('h3', {}, title), h('div', { class: 'error', role: 'alert' }, `Not finished: ${entry.error}`));
  }
  const outputs = entry.outputs || {};
  const original = fileUrl(job, outputs.web || outputs.jpeg);
  const img = h('img', { class: 'picture', src: original, alt: `the finished picture of ${title}` });
  const links = DOWNLOADS.filter(([kind]) => outputs[kind]).map(([kind, label]) =>
    h('a', { href: fileUrl(job, outputs[kind]), target: '_blank', rel: 'noopener' }, label));
  const steps = (entry.steps || []).filter((s) => s.preview);
  const shots = steps.map((s) => ({ src: fileUrl(job, s.preview), caption: stepCaption(s),
    samples: s.kind === 'background' ? samplesOf(job, entry, s) : null }));
  const strip = h('div', { class: 'step-strip', role: 'list', 'aria-label': 'the picture after each step' },
    steps.map((s, i) => h('button', { type: 'button', class: 'step-thumb', role: 'listitem', title: (s.notes || []).join('\n'),
      dataset: { kind: s.kind }, onclick: () => context.lightbox.open(shots, i) },
    h('img', { src: shots[i].src, alt: `after ${s.kind}`, loading: 'lazy' }),
    h('span', { class: 'kind' }, `${s.index + 1}. ${s.kind}`),
    h('span', { class: 'seconds' }, `${Number(s.seconds).toFixed(2)} s`))));
  let editor = null;
  if (outputs.proxy) {
    editor = stretchEditor(job, entry, img, original, context);
    context.editors.push(editor);
  }
  return h('article', { class: 'picture', dataset: { name: entry.name } },
    h('h3', {}, title),
    h('div', { class: 'picture-layout' },
      h('figure', { class: 'picture-frame' }, zoomable(img), h('figcaption', { class: 'row' }, zoomButtons(img), links)),
      h('div', { class: 'picture-side' },
        (entry.notes || []).length ? h('ul', { class: 'notes' }, entry.notes.map((n) => h('li', {}, n))) : null,
        editor ? editor.element : h('p', { class: 'muted' }, 'No linear proxy: the stretch cannot be edited here.'))),
    strip);
}

/** Where a background step's samples are and the size of the image it sampled, or null. */
function samplesOf(job, entry, step) {
  const path = (step.products || {}).background_samples || (entry.outputs || {}).background_samples;
  const url = fileUrl(job, path);
  return url ? { url, size: sampledSize(entry.steps || [], step.index) } : null;
}

const CROP_NOTE = /crop: rows (\d+):(\d+), columns (\d+):(\d+)/;

/** [height, width] of the image a step at `index` works on: the output of the last crop
 *  before it, from the crop's note; null without a crop (the master's size is not told). */
function sampledSize(steps, index) {
  let size = null;
  for (const step of steps) {
    if (step.kind !== 'crop' || step.index >= index) continue;
    for (const note of step.notes || []) {
      const found = CROP_NOTE.exec(note);
      if (found) size = [Number(found[2]) - Number(found[1]), Number(found[4]) - Number(found[3])];
    }
  }
  return size;
}

/**
 * Image pixels per preview pixel, [along y, along x]. A step preview is the mean of k x k
 * blocks (processing.export.downscale; rows and columns that fill no block are dropped), so
 * with the image's size known, k is the whole factor that gives the preview's size; should
 * none fit, the plain ratios. Without the size, k comes from the samples' extent: the grid's
 * outer samples sit within half a box of the frame's edges, far fewer image pixels than half
 * the preview's long side in pixels, so rounding the extent over that side gives k.
 */
export function blockFactors(size, samples, previewWidth, previewHeight) {
  const long = Math.max(previewWidth, previewHeight);
  if (size) {
    const [height, width] = size;
    const k = Math.max(1, Math.floor(Math.max(height, width) / long));
    if (Math.floor(width / k) === previewWidth && Math.floor(height / k) === previewHeight) return [k, k];
    return [height / previewHeight, width / previewWidth];
  }
  const alongX = previewWidth >= previewHeight;
  const extent = Math.max(1, ...samples.map((p) => (alongX ? p.x : p.y) + p.size_px / 2));
  const k = Math.max(1, Math.round(extent / long));
  return [k, k];
}

/** JSON as Python writes it: NaN and ±Infinity (a sample box without sky pixels) become null. */
function parsePythonJson(text) {
  return JSON.parse(text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (t) => (t[0] === '"' ? t : 'null')));
}

/** The sample marks in image pixels, clipped to the image: `factors` from blockFactors(). */
function sampleMarks(samples, previewWidth, previewHeight, [fy, fx]) {
  // Sample (y, x) are pixel indices (a pixel's centre), so the image spans -0.5 .. size - 0.5.
  const right = previewWidth * fx - 0.5;
  const bottom = previewHeight * fy - 0.5;
  const marks = samples.map((p) => {
    const half = p.size_px / 2;
    const x0 = Math.max(-0.5, p.x - half), x1 = Math.min(right, p.x + half);
    const y0 = Math.max(-0.5, p.y - half), y1 = Math.min(bottom, p.y + half);
    const values = (p.values || []).map((v) => (v === null ? '—' : Number(v).toPrecision(3))).join(', ');
    const tip = p.rejected ? p.rejected : `kept: sky ${values} at x ${Math.round(p.x)}, y ${Math.round(p.y)}`;
    return s('rect', { class: p.rejected ? 'rejected' : 'kept', x: x0, y: y0,
      width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0) }, s('title', {}, tip));
  });
  return s('g', { transform: `scale(${1 / fx} ${1 / fy}) translate(0.5 0.5)` }, marks);
}

/** "N of M samples kept", the rejected ones counted by the first word of their reason. */
function samplesLegend(samples) {
  const rejected = samples.filter((p) => p.rejected);
  const reasons = new Map();
  for (const p of rejected) {
    const word = String(p.rejected).split(/[\s:(]/)[0];
    reasons.set(word, (reasons.get(word) || 0) + 1);
  }
  const why = [...reasons].map(([word, n]) => `${n} ${word}`).join(', ');
  return [
    h('span', { class: 'swatch kept', 'aria-hidden': 'true' }),
    h('span', { class: 'kept-count' }, `${samples.length - rejected.length} of ${samples.length} samples kept`),
    rejected.length ? [h('span', { class: 'swatch rejected', 'aria-hidden': 'true' }),
      h('span', {}, `${rejected.length} rejected (${why}): point at a red square for its reason`)] : null,
  ];
}

function stepCaption(step) {
  const notes = (step.notes || []).join('; ');
  return `${step.index + 1}. ${step.kind} (${Number(step.seconds).toFixed(2)} s)${notes ? ` — ${notes}` : ''}`;
}

// ---- the lightbox -------------------------------------------------------------------------

function makeLightbox() {
  const img = h('img', { alt: '' });
  // Drawn over the image with the same box and the preview's pixels as its viewBox: the
  // default "meet" fitting is the image's object-fit: contain.
  const marks = s('svg', { class: 'samples', role: 'img', style: 'display: none' });
  const legend = h('p', { class: 'samples-legend', role: 'status', hidden: true });
  const caption = h('figcaption', { class: 'lightbox-caption' });
  const element = h('div', { class: 'overlay lightbox', id: 'lightbox', hidden: true, role: 'dialog',
    'aria-modal': 'true', 'aria-label': 'a step of the finishing', onclick: close },
  h('figure', {}, h('div', { class: 'lightbox-stage' }, img, marks), legend, caption));
  const samplesCache = new Map();
  let shots = [];
  let index = 0;
  let shown = 0;

  function hideSamples() {
    shown += 1;
    marks.style.display = 'none';
    clear(marks);
    legend.hidden = true;
  }

  function show() {
    hideSamples();
    img.src = shots[index].src;
    img.alt = shots[index].caption;
    caption.textContent = `${shots[index].caption}   (Esc closes, ← → for the other steps)`;
    if (shots[index].samples) drawSamples(shots[index].samples, shown);
  }

  function loadSamples(url) {
    if (!samplesCache.has(url)) {
      const loading = apiBlob(url, { accept: 'application/json' }).then((b) => b.text()).then(parsePythonJson);
      loading.catch(() => samplesCache.delete(url));
      samplesCache.set(url, loading);
    }
    return samplesCache.get(url);
  }

  async function drawSamples(where, mine) {
    fill(legend, 'Loading the background samples…');
    legend.hidden = false;
    let samples;
    try {
      samples = await loadSamples(where.url);
      if (!Array.isArray(samples)) throw new Error('not a list of samples');
      await img.decode();
    } catch (e) {
      if (mine === shown) fill(legend, h('span', { class: 'error' }, `No background samples: ${e.message}`));
      return;
    }
    if (mine !== shown) return;
    const { naturalWidth: width, naturalHeight: height } = img;
    const factors = blockFactors(where.size, samples, width, height);
    marks.setAttribute('viewBox', `0 0 ${width} ${height}`);
    marks.setAttribute('aria-label', `the background samples: ${samples.filter((p) => !p.rejected).length} of ${samples.length} kept`);
    fill(marks, sampleMarks(samples, width, height, factors));
    marks.style.display = '';
    fill(legend, samplesLegend(samples));
  }

  function open(list, at) {
    shots = list;
    index = at;
    show();
    element.hidden = false;
  }
  function close() {
    element.hidden = true;
    hideSamples();
    img.removeAttribute('src');
  }
  function onKey(event) {
    if (element.hidden) return;
    if (event.key === 'Escape') close();
    else if (event.key === 'ArrowRight' && index < shots.length - 1) { index += 1; show(); }
    else if (event.key === 'ArrowLeft' && index > 0) { index -= 1; show(); }
  }
  document.addEventListener('keydown', onKey);
  return { element, open, close, dispose() { document.removeEventListener('keydown', onKey); } };
}

// ---- the stretch editor -------------------------------------------------------------------

/** MTF(x) = (m - 1) x / ((2m - 1) x - m): PixInsight's midtones transfer. */
function mtf(x, m) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  return ((m - 1) * x) / ((2 * m - 1) * x - m);
}

function transfer(level, { shadows, midtones, highlights }) {
  return mtf(Math.min(1, Math.max(0, (level - shadows) / (highlights - shadows))), midtones);
}

function clamp(value, low, high) { return Math.min(high, Math.max(low, value)); }

function rounded(value) { return Number(value.toPrecision(6)); }

/** The recipe with its first stretch replaced by a histogram step of `levels`. */
export function withHistogram(recipe, levels) {
  const step = { kind: 'histogram', shadows: rounded(levels.shadows), midtones: rounded(levels.midtones),
    highlights: rounded(levels.highlights) };
  const steps = [...recipe.steps];
  const first = steps.findIndex((s) => STRETCH_KINDS.has(s.kind));
  if (first >= 0) steps[first] = step;
  else {
    const exported = steps.findIndex((s) => s.kind === 'export');
    steps.splice(exported >= 0 ? exported : steps.length, 0, step);
  }
  return { ...recipe, steps };
}

const HANDLES = [
  ['shadows', 'Shadows: the input level that turns black'],
  ['midtones', 'Midtones: the input level that turns mid-grey (0.5)'],
  ['highlights', 'Highlights: the input level that turns white'],
];

function stretchEditor(job, entry, img, original, context) {
  const control = canControl();
  const canvas = h('canvas', { width: 512, height: 150, 'aria-hidden': 'true' });
  const handles = Object.fromEntries(HANDLES.map(([name, label]) => [name,
    h('div', { class: 'hist-handle', dataset: { handle: name }, role: 'slider', tabindex: control ? 0 : -1,
      'aria-label': label, 'aria-disabled': control ? null : 'true', title: label })]));
  const area = h('div', { class: 'histogram' }, canvas, Object.values(handles));
  const inputs = Object.fromEntries(HANDLES.map(([name]) => [name,
    h('input', { type: 'number', name, step: 'any', min: 0, max: 1, disabled: !control })]));
  const fullRange = h('input', { type: 'checkbox', name: 'full-range' });
  const scale = h('div', { class: 'hist-scale muted' });
  const status = h('div', { class: 'editor-status muted', role: 'status' }, 'Loading the histogram…');
  const issues = h('ul', { class: 'error editor-issues' });
  const reset = h('button', { type: 'button', class: 'control reset-stretch', disabled: true }, 'Reset');
  const save = h('button', { type: 'button', class: 'control save-recipe' }, 'Save as recipe');
  const again = h('button', { type: 'button', class: 'control primary finish-again' }, 'Finish again');
  const element = h('div', { class: 'stretch-editor', dataset: { name: entry.name } },
    h('h4', {}, 'Stretch'),
    area, scale,
    h('div', { class: 'stretch-fields' },
      HANDLES.map(([name]) => h('label', {}, name, inputs[name])),
      h('label', { class: 'inline' }, fullRange, 'whole range 0–1')),
    h('div', { class: 'row' }, reset, save, again),
    status, issues);

  let data = null;
  let start = null;
  let levels = null;
  let recipe = null;
  let timer = null;
  let counter = 0;
  let objectUrl = null;
  let disposed = false;

  const say = (text, kind = 'muted') => { status.className = `editor-status ${kind}`; status.textContent = text; };
  const upper = () => data.range[1];
  const fraction = (level) => clamp(level / upper(), 0, 1);
  const midLevel = () => levels.shadows + levels.midtones * (levels.highlights - levels.shadows);

  async function loadHistogram() {
    const query = `name=${encodeURIComponent(entry.name)}${fullRange.checked ? '&upper=1' : ''}`;
    try {
      data = await api(`/api/processing/jobs/${job.id}/histogram?${query}`);
    } catch (e) { say(`No histogram: ${e.message}`, 'error'); return; }
    if (disposed) return;
    if (!start) {
      start = { shadows: data.stf.shadows, midtones: data.stf.midtones, highlights: data.stf.highlights };
      levels = { ...start };
      const from = { recipe: "the job's histogram step", job: "the job's auto-STF", proxy: "the proxy's auto-STF" }[data.stf.source];
      say(control ? `Drag the handles: the picture shows the edited stretch. Starting from ${from}.` : `Starting from ${from}.`);
    }
    scale.textContent = `linear levels 0 – ${data.range[1].toPrecision(3)} · ${data.channels.join(', ')} · log counts`;
    update(false);
  }

  function draw() {
    const g = canvas.getContext('2d');
    const W = canvas.width, H = canvas.height;
    g.clearRect(0, 0, W, H);
    const peak = Math.max(1, ...data.bins.map((counts) => Math.log1p(Math.max(...counts))));
    const colours = data.channels.length === 1 ? ['rgba(214, 219, 226, 0.75)']
      : ['rgba(224, 96, 90, 0.7)', 'rgba(95, 179, 122, 0.7)', 'rgba(91, 155, 217, 0.7)'];
    g.globalCompositeOperation = 'lighter';
    data.bins.forEach((counts, c) => {
      const step = W / counts.length;
      g.fillStyle = colours[c];
      g.beginPath();
      g.moveTo(0, H);
      counts.forEach((n, i) => {
        const y = H - (Math.log1p(n) / peak) * (H - 4);
        g.lineTo(i * step, y);
        g.lineTo((i + 1) * step, y);
      });
      g.lineTo(W, H);
      g.closePath();
      g.fill();
    });
    g.globalCompositeOperation = 'source-over';
    g.strokeStyle = '#d9825b';
    g.lineWidth = 1.5;
    g.beginPath();
    for (let x = 0; x <= W; x += 1) {
      const y = H - 2 - transfer((x / W) * upper(), levels) * (H - 4);
      if (x === 0) g.moveTo(x, y); else g.lineTo(x, y);
    }
    g.stroke();
  }

  function place() {
    const at = { shadows: levels.shadows, midtones: midLevel(), highlights: levels.highlights };
    for (const [name] of HANDLES) {
      handles[name].style.left = `${(fraction(at[name]) * 100).toFixed(3)}%`;
      handles[name].setAttribute('aria-valuenow', String(rounded(levels[name])));
      handles[name].classList.toggle('beyond', at[name] > upper());
      if (document.activeElement !== inputs[name]) inputs[name].value = String(rounded(levels[name]));
    }
  }

  function update(changed) {
    place();
    draw();
    if (!changed) return;
    reset.disabled = false;
    clearTimeout(timer);
    timer = setTimeout(preview, PREVIEW_DELAY_MS);
  }

  /** A handle moved to input `level`; the midtones balance stays when the ends move. */
  function move(name, level, atRightEdge) {
    const gap = Math.max(1e-6, upper() / data.bins[0].length);
    if (name === 'shadows') levels.shadows = clamp(level, 0, levels.highlights - gap);
    else if (name === 'highlights') {
      // Levels beyond the drawn range are not on the canvas: the right edge means 1.
      levels.highlights = atRightEdge && upper() < 1 ? 1 : clamp(level, levels.shadows + gap, 1);
    } else {
      const span = levels.highlights - levels.shadows;
      levels.midtones = clamp((level - levels.shadows) / span, ...MIDTONES_LIMITS);
    }
    update(true);
  }

  function levelAt(clientX) {
    const box = canvas.getBoundingClientRect();
    const x = clamp((clientX - box.left) / box.width, 0, 1);
    return { level: x * upper(), atRightEdge: x >= 0.995 };
  }

  for (const [name] of HANDLES) {
    const handle = handles[name];
    handle.addEventListener('pointerdown', (event) => {
      if (!control || !data) return;
      event.preventDefault();
      handle.setPointerCapture(event.pointerId);
      handle.classList.add('dragging');
    });
    handle.addEventListener('pointermove', (event) => {
      if (!handle.hasPointerCapture(event.pointerId)) return;
      const { level, atRightEdge } = levelAt(event.clientX);
      move(name, level, atRightEdge);
    });
    const release = (event) => {
      if (handle.hasPointerCapture(event.pointerId)) handle.releasePointerCapture(event.pointerId);
      handle.classList.remove('dragging');
    };
    handle.addEventListener('pointerup', release);
    handle.addEventListener('pointercancel', release);
    handle.addEventListener('keydown', (event) => {
      if (!control || !data || !['ArrowLeft', 'ArrowRight'].includes(event.key)) return;
      event.preventDefault();
      const bins = data.bins[0].length;
      const step = (event.shiftKey ? 10 : 1) * (upper() / bins) * (event.key === 'ArrowLeft' ? -1 : 1);
      const here = name === 'midtones' ? midLevel() : Math.min(levels[name], upper());
      move(name, here + step, false);
    });
    inputs[name].addEventListener('change', () => {
      const value = Number(inputs[name].value);
      const next = { ...levels, [name]: value };
      if (!Number.isFinite(value) || value < 0 || value > 1 || next.shadows >= next.highlights) {
        say(`${name}: a level within 0..1, with the shadows below the highlights`, 'error');
        inputs[name].value = String(rounded(levels[name]));
        return;
      }
      if (name === 'midtones' && (value <= 0 || value >= 1)) {
        say('midtones: a balance strictly between 0 and 1', 'error');
        inputs[name].value = String(rounded(levels.midtones));
        return;
      }
      levels = next;
      update(true);
    });
  }
  fullRange.addEventListener('change', loadHistogram);

  async function baseRecipe() {
    if (!recipe) recipe = (job.config && job.config.recipe) || await api('/api/recipes/default');
    return recipe;
  }

  async function edited() { return withHistogram(await baseRecipe(), levels); }

  async function preview() {
    counter += 1;
    const mine = counter;
    const began = performance.now();
    say('Previewing…');
    try {
      const blob = await apiBlob(`/api/processing/jobs/${job.id}/preview`, {
        method: 'POST', accept: 'image/jpeg', body: { name: entry.name, recipe: await edited() } });
      if (disposed || mine !== counter) return;
      const url = URL.createObjectURL(blob);
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = url;
      img.src = url;
      img.classList.add('edited');
      say(`The edited stretch on the 1024 px proxy (${Math.round(performance.now() - began)} ms); "Finish again" makes the full picture.`);
    } catch (e) {
      if (!disposed && mine === counter) say(`Preview failed: ${e.message}`, 'error');
    }
  }

  reset.addEventListener('click', () => {
    clearTimeout(timer);
    counter += 1;
    levels = { ...start };
    img.src = original;
    img.classList.remove('edited');
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
    reset.disabled = true;
    fill(issues);
    say('Back to the job\'s stretch.');
    update(false);
  });

  save.addEventListener('click', async () => {
    fill(issues);
    const base = await baseRecipe();
    const name = prompt('Save the recipe with this stretch under the name:', `${base.name} (${entry.target || entry.name})`);
    if (name === null) return;
    save.disabled = true;
    try {
      const saved = await api('/api/recipes', { method: 'POST', body: { document: { ...(await edited()), name } } });
      say(`Saved as the recipe "${saved.name}" (#${saved.id}).`);
    } catch (e) { showProblems('Not saved', e); }
    finally { save.disabled = false; }
  });

  again.addEventListener('click', async () => {
    fill(issues);
    again.disabled = true;
    try {
      const made = await api(`/api/processing/jobs/${job.id}/finish`, { method: 'POST', body: { recipe: await edited() } });
      say(`Queued as job #${made.id}: its pictures show here once it is done.`);
      context.queued(made.id);
    } catch (e) { showProblems('Not queued', e); }
    finally { again.disabled = false; }
  });

  /** A refusal: every problem with its path in the recipe (a 422's list), or the message. */
  function showProblems(what, error) {
    say(`${what}: HTTP ${error.status || '?'}`, 'error');
    const items = Array.isArray(error.detail) ? error.detail : [error.detail];
    fill(issues, items.map((d) => h('li', {}, d && typeof d === 'object' && (d.path !== undefined || d.loc)
      ? `${d.path || (d.loc || []).slice(1).join('.') || 'recipe'}: ${d.msg || d.message}${d.fix ? ` (${d.fix})` : ''}`
      : describe(d) || error.message)));
  }

  loadHistogram();
  return {
    element,
    dispose() {
      disposed = true;
      clearTimeout(timer);
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    },
  };
}

// ---- queueing a job -------------------------------------------------------------------------

/** The "Queue a job" card: a night, a target across nights or a folder, the options from the API's own schema (with
 *  its defaults), a saved recipe or the default one, linear only. A refused field shows the
 *  daemon's message beside it. `queued(id)` follows the new job. */
function queueForm(queued) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const card = h('section', { class: 'card wide', id: 'queue-job' }, h('h2', {}, 'Queue a job'), body);
  (async () => {
    let openapi, sessions, recipes, targets;
    try {
      [openapi, sessions, recipes, targets] = await Promise.all([api('/openapi.json'), api('/api/sessions'),
        api('/api/recipes'), api('/api/processing/targets')]);
    } catch (e) { fill(body, h('p', { class: 'error' }, e.message)); return; }
    fill(body, jobForm(openapi.components.schemas, sessions, recipes, targets, queued));
  })();
  return card;
}

function jobForm(schemas, sessions, recipes, targets, queued) {
  const form = new Form(schemas, false);
  const options = {};
  const source = h('select', { name: 'source' },
    h('option', { value: 'night', selected: sessions.length > 0 }, 'a night'),
    h('option', { value: 'target' }, 'a target across nights'),
    h('option', { value: 'folder', selected: sessions.length === 0 }, 'a folder'));
  const night = h('select', { name: 'session_id' }, sessions.length ? sessions.map((n) =>
    h('option', { value: String(n.id) }, `#${n.id} · ${n.night_date} · ${n.profile} · ${n.accepted_lights} lights`))
    : h('option', { value: '' }, 'no night yet'));
  const folder = h('input', { type: 'text', name: 'folder', placeholder: '/path/to/a/night (lights, darks, flats, bias)' });
  const target = h('select', { name: 'target' }, targets.length ? targets.map((t) =>
    h('option', { value: t.name }, `${t.name} · ${t.accepted_lights} lights · ${t.nights} night${t.nights === 1 ? '' : 's'}`))
    : h('option', { value: '' }, 'no target with lights yet'));
  const filter = h('select', { name: 'filter' });
  const showFilters = () => {
    const chosen = targets.find((t) => t.name === target.value);
    fill(filter, h('option', { value: '' }, 'every filter'),
      (chosen ? chosen.filters : []).map((f) => h('option', { value: f }, f)));
  };
  target.addEventListener('change', showFilters);
  showFilters();
  const targetField = form.register('target', h('label', { class: 'field' }, h('span', {}, 'target'), target));
  const filterField = form.register('filter', h('label', { class: 'field' }, h('span', {}, 'filter'), filter));
  const nightField = form.register('session_id', h('label', { class: 'field' }, h('span', {}, 'night'), night));
  const folderField = form.register('folder', h('label', { class: 'field wide-field' }, h('span', {}, 'folder'), folder));
  const recipe = h('select', { name: 'recipe_id' }, h('option', { value: '' }, 'the default recipe'),
    recipes.map((r) => h('option', { value: String(r.id) }, `#${r.id} ${r.name}`)));
  const recipeField = form.register('recipe_id', h('label', { class: 'field' }, h('span', {}, 'recipe'), recipe));
  const linear = h('input', { type: 'checkbox', name: 'linear_only' });
  const optionsBox = h('details', { class: 'job-options' }, h('summary', {}, 'Options (the defaults unless changed)'),
    form.object(form.resolve(schemas.ProcessingOptions), options, 'options'));
  const status = h('p', { class: 'muted queue-status', role: 'status' });
  const general = h('ul', { class: 'error queue-errors' });
  const submit = h('button', { type: 'button', class: 'primary control queue-job' }, 'Queue');
  const showSource = () => {
    nightField.hidden = source.value !== 'night';
    folderField.hidden = source.value !== 'folder';
    targetField.hidden = filterField.hidden = source.value !== 'target';
  };
  source.addEventListener('change', showSource);
  showSource();

  submit.addEventListener('click', async () => {
    form.clearErrors();
    fill(general);
    const request = { options, linear_only: linear.checked };
    if (source.value === 'night') request.session_id = night.value ? Number(night.value) : null;
    else if (source.value === 'target') {
      request.target = target.value || null;
      if (filter.value) request.filter = filter.value;
    } else request.folder = folder.value.trim() || null;
    if (recipe.value) request.recipe_id = Number(recipe.value);
    status.className = 'muted queue-status';
    status.textContent = 'Queueing…';
    submit.disabled = true;
    try {
      const job = await api('/api/processing/jobs', { method: 'POST', body: request });
      status.textContent = `Queued as job #${job.id}: its result shows below once it is done.`;
      queued(job.id);
    } catch (e) {
      status.className = 'error queue-status';
      status.textContent = `Not queued: ${e.message}`;
      if (Array.isArray(e.detail)) {
        const unplaced = e.detail.filter((d) => {
          const placed = form.showError((d.loc || []).slice(1).join('.'), d.msg || d.message);
          if (placed && optionsBox.contains(placed)) optionsBox.open = true;
          return !placed;
        });
        fill(general, unplaced.map((d) => h('li', {}, `${(d.loc || []).slice(1).join('.') || 'job'}: ${d.msg || d.message}`)));
      }
    } finally { submit.disabled = false; }
  });

  return h('div', { class: 'plan-form job-form' },
    h('div', { class: 'form-grid' },
      h('label', { class: 'field' }, h('span', {}, 'stack'), source), nightField, targetField, filterField, folderField, recipeField,
      h('label', { class: 'field check' }, linear, h('span', {}, 'linear only (no finished picture)'))),
    optionsBox,
    h('div', { class: 'row' }, submit),
    status, general);
}

// ---- a job's result -------------------------------------------------------------------------

const GROUP_DOWNLOADS = [['fits', 'FITS'], ['xisf', 'XISF'], ['tiff', 'TIFF'], ['jpeg', 'JPEG']];

function baseName(path) { return String(path || '').split('/').pop(); }

/** A light's verdict: kept, a copy of another light, or rejected (with the reason). */
export function verdict(frame) {
  if (frame.duplicate_of) return 'duplicate';
  return frame.accepted ? 'accepted' : 'rejected';
}

function resultView(job) {
  const out = job.outputs || {};
  const inputs = Object.entries(out.inputs || {}).filter(([, n]) => n).map(([kind, n]) => `${n} ${kind.toLowerCase()}`).join(', ');
  const origin = job.config && job.config.finish_of ? `finished again from job #${job.config.finish_of}` : job.session_id ? `night #${job.session_id}` : job.folder;
  return [
    h('h2', {}, `Result of job #${job.id}`),
    h('p', { class: 'muted' }, [origin, inputs ? `inputs: ${inputs}` : ''].filter(Boolean).join(' · ')),
    (out.groups || []).map((g) => groupView(job, g)),
  ];
}

function groupView(job, group) {
  const base = `/api/processing/jobs/${job.id}/groups/${encodeURIComponent(group.name)}`;
  const outputs = group.outputs || {};
  const frames = group.frames || [];
  const rejected = frames.filter((f) => verdict(f) === 'rejected').length;
  const copies = frames.filter((f) => verdict(f) === 'duplicate').length;
  const img = outputs.jpeg ? h('img', { class: 'group-picture', src: `${base}/jpeg`, alt: `the stack of ${group.name}` }) : null;
  const links = GROUP_DOWNLOADS.filter(([kind]) => outputs[kind]).map(([kind, label]) =>
    kind === 'tiff' ? h('a', { href: fileUrl(job, outputs.tiff), download: '' }, label) : h('a', { href: `${base}/${kind}`, download: '' }, label));
  const rows = frames.map((f) => {
    const v = verdict(f);
    return h('tr', { class: `light ${v}`, dataset: { verdict: v } },
      h('td', { title: f.path }, baseName(f.path)),
      h('td', {}, badge(v, v === 'accepted' ? 'ok' : v === 'duplicate' ? 'warning' : 'rejected')),
      h('td', { class: 'wrap reason' }, v === 'duplicate' ? `a copy of ${baseName(f.duplicate_of)}` : f.reason || ''),
      h('td', { class: 'num' }, f.weight === null || f.weight === undefined ? '—' : Number(f.weight).toFixed(3)),
      h('td', { class: 'num' }, f.stars ?? '—'),
      h('td', { class: 'num' }, f.fwhm_px === null || f.fwhm_px === undefined ? '—' : Number(f.fwhm_px).toFixed(2)),
      h('td', { class: 'num' }, f.eccentricity === null || f.eccentricity === undefined ? '—' : Number(f.eccentricity).toFixed(2)));
  });
  return h('article', { class: 'job-group', dataset: { group: group.name } },
    h('h3', {}, group.name, h('span', { class: 'muted' }, ` · ${group.integrated ?? 0} of ${frames.length} lights stacked` +
      `${rejected ? ` · ${rejected} rejected` : ''}${copies ? ` · ${copies} duplicate${copies > 1 ? 's' : ''}` : ''}`)),
    (group.warnings || []).map((w) => h('div', { class: 'warning', role: 'alert' }, `⚠ ${w}`)),
    img ? h('figure', { class: 'picture-frame' }, zoomable(img), h('figcaption', { class: 'row' }, zoomButtons(img), links))
      : h('p', { class: 'row' }, links),
    h('div', { class: 'table-scroll' }, h('table', { class: 'lights' },
      h('thead', {}, h('tr', {}, ['light', 'verdict', 'reason', 'weight', 'stars', 'FWHM px', 'eccentricity'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows))));
}

// ---- zoom -----------------------------------------------------------------------------------

/** The picture in a box that scrolls when it is shown at 100 %. */
function zoomable(img) {
  return h('div', { class: 'zoom-box fit' }, img);
}

function zoomButtons(img) {
  const set = (actual) => {
    const box = img.parentElement;
    box.classList.toggle('actual', actual);
    box.classList.toggle('fit', !actual);
    fit.setAttribute('aria-pressed', String(!actual));
    full.setAttribute('aria-pressed', String(actual));
  };
  const fit = h('button', { type: 'button', class: 'zoom-fit', 'aria-pressed': 'true', onclick: () => set(false) }, 'Fit');
  const full = h('button', { type: 'button', class: 'zoom-100', 'aria-pressed': 'false', onclick: () => set(true) }, '100 %');
  return h('span', { class: 'zoom' }, fit, full);
}

// Equipment: the profile as a form generated from its JSON schema (GET /api/profile/schema),
// saved with PUT /api/profile (a refused field shows the daemon's message beside it), each
// device tested (connected) on its own; the site kept in the profile (decimal or sexagesimal)
// beside the one in use and the mount's, with a warning when they differ; the custom horizon
// uploaded and drawn.
import { api } from './api.js';
import { h, s, fill, fmt } from './dom.js';
import { canControl } from './ui.js';
import { angleEcho, numberOrText } from './templates.js';

export function mount() {
  const profileBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const siteBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const horizonBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const element = h('div', { class: 'grid equipment-page' },
    h('section', { class: 'card wide', id: 'profile-card' }, h('h2', {}, 'Equipment profile'), profileBox),
    h('section', { class: 'card', id: 'site-card' }, h('h2', {}, 'Site'), siteBox),
    h('section', { class: 'card', id: 'horizon-card' }, h('h2', {}, 'Horizon'), horizonBox));

  (async () => {
    try {
      const [read, schema] = await Promise.all([api('/api/profile'), api('/api/profile/schema')]);
      const showSite = (r) => fill(siteBox, siteView(r, form));
      const form = profileForm(read, schema, async () => {
        try { showSite(await api('/api/profile')); } catch (e) { fill(siteBox, h('p', { class: 'error' }, e.message)); }
      });
      fill(profileBox, form.element);
      showSite(read);
    } catch (e) {
      fill(profileBox, h('p', { class: 'error' }, e.message));
      fill(siteBox);
    }
    try {
      fill(horizonBox, horizonView(await api('/api/profile/horizon')));
    } catch (e) { fill(horizonBox, h('p', { class: 'error' }, e.message)); }
  })();
  return { element };
}

// ---- the schema -----------------------------------------------------------------------------

/** Resolves "$ref"s against `defs` (a JSON schema's $defs or an OpenAPI document's schemas). */
function resolver(defs) {
  return function resolve(schema) {
    let out = schema;
    while (out && out.$ref) out = { ...defs[out.$ref.split('/').pop()], ...out, $ref: undefined };
    return out;
  };
}

/** A property's schema without its null choice, and whether null is allowed. */
function unwrap(resolve, prop) {
  const schema = resolve(prop);
  if (schema.anyOf) {
    const options = schema.anyOf.filter((o) => o.type !== 'null');
    const number = options.find((o) => o.type === 'number');
    if (number && options.length === 2 && options.some((o) => o.type === 'string')) {
      // A number that may also be typed as text (a site's "+47 22 30").
      return { schema: { ...number, text: true, description: schema.description, default: schema.default },
        nullable: options.length < schema.anyOf.length };
    }
    if (options.length === 1) {
      return { schema: { ...resolve(options[0]), description: schema.description || resolve(options[0]).description,
        default: schema.default }, nullable: options.length < schema.anyOf.length };
    }
  }
  return { schema, nullable: false };
}

function label(key) { return key.replace(/_/g, ' '); }

function limits(schema) {
  return [schema.minimum !== undefined ? `≥ ${schema.minimum}` : '', schema.exclusiveMinimum !== undefined ? `> ${schema.exclusiveMinimum}` : '',
    schema.maximum !== undefined ? `≤ ${schema.maximum}` : '', schema.exclusiveMaximum !== undefined ? `< ${schema.exclusiveMaximum}` : ''].filter(Boolean).join(', ');
}

// ---- the form ---------------------------------------------------------------------------------

/**
 * Builds inputs for an object schema into `into`, reading and writing `target[key]`; every
 * input's wrapper carries data-path (the daemon's loc without "body") for its errors.
 */
export class Form {
  constructor(defs, disabled) {
    this.resolve = resolver(defs);
    this.disabled = disabled;
    this.fields = new Map();
  }

  object(schema, target, path) {
    const props = schema.properties || {};
    return h('div', { class: 'form-grid' }, Object.entries(props).map(([key, prop]) => this.field(prop, target, key, path ? `${path}.${key}` : key)));
  }

  register(path, wrapper) {
    const error = h('span', { class: 'field-error', role: 'alert' });
    wrapper.append(error);
    wrapper.dataset.path = path;
    this.fields.set(path, { wrapper, error });
    return wrapper;
  }

  field(prop, target, key, path) {
    const { schema, nullable } = unwrap(this.resolve, prop);
    const title = schema.description || '';
    const fallback = schema.default;
    const set = (value) => { if (value === undefined) delete target[key]; else target[key] = value; };
    const current = target[key];
    if (schema.type === 'object' && schema.properties) {
      if (typeof target[key] !== 'object' || target[key] === null) target[key] = {};
      return this.register(path, h('fieldset', { class: 'field-group wide-field' }, h('legend', { title }, label(key)),
        this.object(schema, target[key], path)));
    }
    if (schema.oneOf && schema.discriminator) return this.choice(schema, target, key, path);
    let input;
    if (schema.enum || schema.const !== undefined) {
      const values = schema.enum || [schema.const];
      input = h('select', { name: path, disabled: this.disabled },
        nullable ? h('option', { value: '' }, '—') : null,
        values.map((v) => h('option', { value: String(v), selected: current === v }, String(v))));
      input.addEventListener('change', () => set(input.value === '' ? null : values.find((v) => String(v) === input.value)));
    } else if (schema.type === 'boolean') {
      input = h('input', { type: 'checkbox', name: path, checked: current ?? fallback ?? false, disabled: this.disabled });
      input.addEventListener('change', () => set(input.checked));
      return this.register(path, h('label', { class: 'field check', title }, input, h('span', {}, label(key))));
    } else if (schema.type === 'number' && schema.text) {
      const hint = limits(schema);
      input = h('input', { type: 'text', name: path, disabled: this.disabled, autocomplete: 'off', spellcheck: false,
        value: current === null || current === undefined ? '' : String(current), placeholder: '+47 22 30 or 47.375' });
      input.title = [title, hint].filter(Boolean).join(' · ');
      const echo = h('span', { class: 'angle-echo muted' }, angleEcho(input.value, false));
      input.addEventListener('input', () => {
        set(input.value.trim() === '' ? undefined : numberOrText(input.value));
        echo.textContent = angleEcho(input.value, false);
      });
      return this.register(path, h('label', { class: 'field', title }, h('span', {}, label(key)), input, echo));
    } else if (schema.type === 'integer' || schema.type === 'number') {
      const hint = limits(schema);
      input = h('input', { type: 'number', name: path, step: schema.type === 'integer' ? 1 : 'any', disabled: this.disabled,
        value: current === null || current === undefined ? '' : String(current),
        placeholder: fallback === null || fallback === undefined ? (nullable ? 'off' : '') : String(fallback) });
      input.title = [title, hint].filter(Boolean).join(' · ');
      // An empty box: null where the schema allows it (a limit switched off), else the default.
      input.addEventListener('input', () => set(input.value === '' ? (nullable && fallback !== null && fallback !== undefined ? null : undefined)
        : Number(input.value)));
    } else {
      input = h('input', { type: 'text', name: path, disabled: this.disabled, value: current ?? '',
        placeholder: fallback === null || fallback === undefined ? '' : String(fallback) });
      input.title = title;
      input.addEventListener('input', () => set(input.value === '' ? (nullable ? null : undefined) : input.value));
    }
    return this.register(path, h('label', { class: 'field', title }, h('span', {}, label(key)), input));
  }

  /** A discriminated union (the guider): a select of kinds and the chosen kind's fields. */
  choice(schema, target, key, path) {
    const kinds = Object.entries(schema.discriminator.mapping);
    const tag = schema.discriminator.propertyName;
    if (typeof target[key] !== 'object' || target[key] === null) target[key] = { [tag]: kinds[0][0] };
    const body = h('div', {});
    const select = h('select', { name: `${path}.${tag}`, disabled: this.disabled },
      kinds.map(([kind]) => h('option', { value: kind, selected: target[key][tag] === kind }, kind)));
    const show = () => {
      const def = this.resolve({ $ref: schema.discriminator.mapping[select.value] });
      const props = Object.fromEntries(Object.entries(def.properties || {}).filter(([k]) => k !== tag));
      fill(body, this.object({ ...def, properties: props }, target[key], path));
    };
    select.addEventListener('change', () => { target[key] = { [tag]: select.value }; show(); });
    show();
    return this.register(path, h('fieldset', { class: 'field-group wide-field' }, h('legend', { title: schema.description || '' }, label(key)),
      h('label', { class: 'field' }, h('span', {}, tag), select), body));
  }

  clearErrors() {
    for (const { wrapper, error } of this.fields.values()) { wrapper.classList.remove('invalid'); error.textContent = ''; }
  }

  /** Shows a message beside the deepest field its path names; false when none matches. */
  showError(path, message) {
    const parts = path.split('.');
    while (parts.length) {
      const found = this.fields.get(parts.join('.'));
      if (found) {
        found.wrapper.classList.add('invalid');
        found.error.textContent = found.error.textContent ? `${found.error.textContent}; ${message}` : message;
        return found.wrapper;
      }
      parts.pop();
    }
    return null;
  }
}

/** A site with no field filled in is no site (the profile then has no `site:`). */
function siteOrNull(site) {
  return site && Object.values(site).some((v) => v !== undefined && v !== null && v !== '') ? site : null;
}

function profileForm(read, schema, saved) {
  const control = canControl();
  const doc = structuredClone(read.profile);
  const form = new Form(schema.$defs || {}, !control);
  const resolve = form.resolve;
  const props = schema.properties;
  const roles = Object.keys(props).filter((k) => {
    const { schema: role } = unwrap(resolve, props[k]);
    return role.properties && role.properties.url;
  });
  const status = h('p', { class: 'muted save-status', role: 'status' });
  const general = h('ul', { class: 'error profile-errors' });

  const nameField = form.field(props.name, doc, 'name', 'name');
  const siteBox = h('div', { class: 'site-fields' });
  const showSite = () => {
    if (!doc.site) doc.site = {};
    const { schema: site } = unwrap(resolve, props.site);
    fill(siteBox, form.register('site', h('fieldset', { class: 'field-group wide-field', id: 'site-fields' },
      h('legend', { title: site.description || '' }, 'site'),
      h('p', { class: 'muted' }, 'Used when the mount reports no site. Latitude north and longitude east positive, '
        + 'in decimal degrees or as +47 22 30; leave all three empty for none.'),
      form.object(site, doc.site, 'site'))));
  };
  showSite();
  const roleCards = roles.map((role) => roleCard(role, props[role], doc, form, control));
  const others = Object.keys(props).filter((k) => k !== 'name' && k !== 'site' && !roles.includes(k))
    .map((k) => h('details', { class: 'profile-extra' }, h('summary', {}, label(k)), form.field(props[k], doc, k, k)));

  const save = h('button', { type: 'button', class: 'primary control save-profile' }, 'Save profile');
  save.addEventListener('click', async () => {
    form.clearErrors();
    fill(general);
    status.className = 'muted save-status';
    status.textContent = 'Saving…';
    save.disabled = true;
    try {
      const answer = await api('/api/profile', { method: 'PUT', body: { ...doc, site: siteOrNull(doc.site) } });
      status.textContent = `${answer.message}${answer.backup ? ` The previous file is kept as ${answer.backup}.` : ''}`;
      await saved();
    } catch (e) {
      status.className = 'error save-status';
      status.textContent = `Not saved: ${e.message}`;
      if (Array.isArray(e.detail)) {
        const unplaced = e.detail.filter((d) => !form.showError((d.loc || []).slice(1).join('.'), d.msg || d.message));
        fill(general, unplaced.map((d) => h('li', {}, `${(d.loc || []).slice(1).join('.') || 'profile'}: ${d.msg || d.message}`)));
        const first = document.querySelector('#profile-card .invalid');
        if (first) first.scrollIntoView({ block: 'center' });
      }
    } finally { save.disabled = false; }
  });

  const element = h('div', { class: 'plan-form profile-form' },
    h('p', { class: 'muted profile-note' }, read.note),
    nameField,
    siteBox,
    h('div', { class: 'role-list' }, roleCards),
    others,
    control ? h('div', { class: 'row' }, save) : null,
    status, general);
  /** Puts a site (the mount's) into the form's site fields, to be saved with the profile. */
  const useSite = (site) => { doc.site = { ...site }; showSite(); };
  return { element, useSite };
}

function roleCard(role, prop, doc, form, control) {
  const { schema } = unwrap(form.resolve, prop);
  const fields = h('div', { class: 'role-fields' });
  const use = h('input', { type: 'checkbox', name: `use-${role}`, checked: Boolean(doc[role]), disabled: !control });
  const result = h('span', { class: 'test-result', role: 'status' });
  const test = h('button', { type: 'button', class: 'control test-device', disabled: !doc[role] }, 'Connect / test');
  const show = () => {
    if (doc[role]) fill(fields, form.object(schema, doc[role], role));
    else fill(fields);
  };
  use.addEventListener('change', () => {
    doc[role] = use.checked ? (doc[role] || { url: '', device_number: 0 }) : null;
    test.disabled = !use.checked;
    show();
  });
  test.addEventListener('click', async () => {
    result.className = 'test-result muted';
    result.textContent = 'Connecting…';
    test.disabled = true;
    try {
      const tested = await api(`/api/profile/test/${role}`, { method: 'POST' });
      result.className = `test-result ${tested.ok ? 'ok' : 'error'}`;
      result.textContent = tested.ok ? `Connected: ${tested.name || tested.location} (${tested.seconds.toFixed(1)} s)`
        : `Failed: ${tested.error}`;
    } catch (e) {
      result.className = 'test-result error';
      result.textContent = e.status === 404 ? `${e.message}` : `Failed: ${e.message}`;
    } finally { test.disabled = !doc[role]; }
  });
  show();
  const card = h('div', { class: 'role-card', dataset: { role } },
    h('div', { class: 'row role-head' },
      h('label', { class: 'inline' }, use, h('strong', {}, label(role))),
      control ? test : null, result),
    fields);
  return form.register(role, card);
}

// ---- the site and the horizon -----------------------------------------------------------------

/** The site in use and where it comes from, the mount's report, and their disagreement. */
function siteView(read, form) {
  const site = read.site;
  const from = { mount: 'as the mount reports it', profile: "the profile's (the mount reports none)" }[read.site_source] || '';
  const copy = h('button', { type: 'button', class: 'control use-mount-site' }, "Use the mount's site in the profile");
  copy.addEventListener('click', () => {
    form.useSite(read.mount_site);
    const fields = document.getElementById('site-fields');
    if (fields) fields.scrollIntoView({ block: 'center' });
  });
  return [
    site ? h('dl', { class: 'figures site-figures' },
      h('dt', {}, 'Latitude'), h('dd', { class: 'latitude' }, fmt(site.latitude_deg, 5, '°')),
      h('dt', {}, 'Longitude'), h('dd', { class: 'longitude' }, fmt(site.longitude_deg, 5, '°')),
      h('dt', {}, 'Elevation'), h('dd', { class: 'elevation' }, fmt(site.elevation_m, 0, ' m')))
      : h('p', { class: 'muted site-unknown' }, 'The site is not known yet: connect the mount (it reports the site), '
        + 'or give the site in the profile and restart the daemon.'),
    site ? h('p', { class: 'muted site-source' }, `In use: ${from}.`) : null,
    read.site_warning ? h('p', { class: 'error site-warning', role: 'alert' }, read.site_warning) : null,
    read.mount_site && canControl() ? h('div', { class: 'row' }, copy) : null,
  ];
}

const PLOT = { width: 360, height: 130, top: 8, left: 30, bottom: 22, right: 6 };

/** The horizon as altitude over azimuth 0–360°, wrapping around north as the reader does. */
export function horizonPlot(points) {
  const { width, height, top, left, bottom, right } = PLOT;
  const w = width - left - right;
  const hgt = height - top - bottom;
  const x = (az) => left + (az / 360) * w;
  const y = (alt) => top + hgt - (Math.max(0, Math.min(90, alt)) / 90) * hgt;
  const line = [];
  if (points.length) {
    const first = points[0];
    const last = points[points.length - 1];
    // The altitude at 0° and 360°: between the last point and the first one, across north.
    const span = first[0] + 360 - last[0];
    const edge = span > 0 ? last[1] + ((360 - last[0]) / span) * (first[1] - last[1]) : first[1];
    line.push([0, edge], ...points, [360, edge]);
  }
  const path = line.map(([az, alt], i) => `${i ? 'L' : 'M'}${x(az).toFixed(1)},${y(alt).toFixed(1)}`).join(' ');
  const ticks = [0, 90, 180, 270, 360];
  return s('svg', { class: 'horizon-plot chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `the horizon: ${points.length} points` },
  [0, 30, 60, 90].map((alt) => [s('line', { class: 'axis', x1: left, x2: width - right, y1: y(alt), y2: y(alt) }),
    s('text', { x: left - 4, y: y(alt) + 4, 'text-anchor': 'end' }, `${alt}°`)]),
  ticks.map((az) => s('text', { x: x(az), y: height - 6, 'text-anchor': 'middle' }, ['N', 'E', 'S', 'W', 'N'][az / 90])),
  path ? s('path', { class: 'horizon-area', d: `${path} L${x(360)},${y(0)} L${x(0)},${y(0)} Z` }) : null,
  path ? s('path', { class: 'horizon-line', d: path }) : null,
  points.map(([az, alt]) => s('circle', { class: 'horizon-point', cx: x(az), cy: y(alt), r: 2 }, s('title', {}, `${az}°: ${alt}°`))));
}

function horizonView(read) {
  const plot = h('div', { class: 'horizon-figure' });
  const facts = h('p', { class: 'muted horizon-facts' });
  const error = h('span', { class: 'field-error horizon-error', role: 'alert' });
  const status = h('p', { class: 'muted horizon-status', role: 'status' });
  const show = (r) => {
    fill(plot, r.points.length ? horizonPlot(r.points) : h('p', { class: 'muted' }, 'No custom horizon: the nights use the flat horizon (0°).'));
    facts.textContent = r.points.length ? `${r.points.length} points in ${r.path}${r.in_use ? ', used by the nights' : ''}.` : `Upload a file to store it as ${r.path}.`;
  };
  const file = h('input', { type: 'file', name: 'horizon-file', accept: '.hrz,.hzn,.hpts,.txt,text/plain' });
  file.addEventListener('change', async () => {
    const chosen = file.files && file.files[0];
    if (!chosen) return;
    error.textContent = '';
    status.textContent = 'Uploading…';
    try {
      const stored = await api('/api/profile/horizon', { method: 'POST', body: { text: await chosen.text() } });
      show(stored);
      status.textContent = stored.message;
    } catch (e) {
      status.textContent = '';
      const detail = Array.isArray(e.detail) ? e.detail.map((d) => d.msg || d.message).join('; ') : e.message;
      error.textContent = `${chosen.name}: ${detail}`;
    } finally { file.value = ''; }
  });
  show(read);
  return [plot, facts,
    canControl() ? h('label', { class: 'field horizon-upload' }, h('span', {}, 'Upload a horizon (NINA .hrz or MountWizzard4 .hpts)'), file, error) : null,
    status];
}

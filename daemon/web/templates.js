// Sequence templates: the list, new ones from the shipped examples or imported from NINA files,
// and the tree editor built
// from the daemon's JSON schema of a sequence document (no list of node kinds here).
import { api, describe } from './api.js';
import { h, clear, fill, dateTime } from './dom.js';
import { notice, canControl } from './ui.js';
import { formatRa, formatDec } from './framing.js';

const STRUCTURE = new Set(['kind', 'items', 'triggers', 'conditions']);
const COMMON = new Set(['name', 'attempts', 'retry_delay_s', 'on_error']);
let schemaPromise = null;

function loadSchema() {
  if (!schemaPromise) schemaPromise = api('/api/templates/schema').catch((e) => { schemaPromise = null; throw e; });
  return schemaPromise;
}

// ---- the list ---------------------------------------------------------------------------

export function mountList() {
  const table = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const examples = h('select', { id: 'example-select' });
  const create = h('button', { class: 'control primary', type: 'button', id: 'example-create' }, 'Create from example');
  const about = h('p', { class: 'muted', id: 'example-about' });
  const ninaFile = h('input', { type: 'file', id: 'nina-file', accept: '.json,application/json' });
  const ninaReport = h('div', { id: 'nina-report' });
  const element = h('div', { class: 'grid' },
    h('section', { class: 'card wide' }, h('h2', {}, 'Sequence templates'), table),
    h('section', { class: 'card wide control' }, h('h2', {}, 'New template'),
      h('div', { class: 'row' }, examples, create), about),
    h('section', { class: 'card wide control' }, h('h2', {}, 'Import from NINA'),
      h('p', { class: 'muted' }, 'A N.I.N.A. Advanced Sequencer file (*.template.json or a saved sequence): '
        + 'what cannot be mapped is listed with its place in the file.'),
      h('label', { class: 'row' }, 'NINA file ', ninaFile), ninaReport));

  let exampleList = [];
  let templates = [];

  async function load() {
    try {
      templates = await api('/api/templates');
      renderTable();
    } catch (e) { fill(table, h('p', { class: 'error' }, e.message)); }
  }

  function renderTable() {
    if (!templates.length) { fill(table, h('p', { class: 'muted' }, 'No template yet: create one from an example.')); return; }
    fill(table, h('table', { id: 'template-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Targets'), h('th', {}, 'Updated'), h('th', {}))),
      h('tbody', {}, templates.map((t) => h('tr', { dataset: { id: String(t.id) } },
        h('td', {}, h('a', { href: `#/templates/${t.id}` }, t.name)),
        h('td', {}, (t.document.targets || []).map((c) => c.target_name || c.kind).join(', ')),
        h('td', {}, dateTime(t.updated_at)),
        h('td', {}, h('button', { class: 'control danger', type: 'button', onclick: () => remove(t) }, 'Delete')))))));
  }

  async function remove(t) {
    if (!confirm(`Delete the template "${t.name}"?`)) return;
    try { await api(`/api/templates/${t.id}`, { method: 'DELETE' }); } catch (e) { notice(e.message); }
    load();
  }

  function showAbout() {
    const chosen = exampleList[examples.selectedIndex];
    about.textContent = chosen ? chosen.description : '';
  }

  async function loadExamples() {
    try {
      exampleList = await api('/api/templates/examples');
      fill(examples, exampleList.map((e) => h('option', { value: e.file }, `${e.name} (${e.file})`)));
      showAbout();
    } catch (e) { about.textContent = e.message; }
  }

  examples.addEventListener('change', showAbout);
  create.addEventListener('click', async () => {
    const chosen = exampleList[examples.selectedIndex];
    if (!chosen) return;
    const names = new Set(templates.map((t) => t.name));
    let name = chosen.name;
    for (let n = 2; names.has(name); n += 1) name = `${chosen.name} (${n})`;
    create.disabled = true;
    try {
      const made = await api('/api/templates', { method: 'POST', body: { document: { ...chosen.document, name } } });
      location.hash = `#/templates/${made.id}`;
    } catch (e) { notice(e.message); }
    finally { create.disabled = false; }
  });
  ninaFile.addEventListener('change', async () => {
    const file = ninaFile.files[0];
    if (!file) return;
    let nina;
    try { nina = JSON.parse(await file.text()); } catch (e) {
      fill(ninaReport, h('p', { class: 'error' }, `${file.name} is not JSON: ${e.message}`));
      return;
    }
    // The daemon names the template after NINA's container ("Name (2)" when taken); a file
    // whose container has no name is named after the file.
    const named = nina && typeof nina.Name === 'string' && nina.Name.trim();
    const body = named ? { nina } : { nina, name: file.name.replace(/(\.template)?\.json$/i, '') };
    ninaFile.disabled = true;
    try {
      const made = await api('/api/templates/import', { method: 'POST', body });
      renderReport(file.name, made);
      await load();
    } catch (e) { fill(ninaReport, h('p', { class: 'error' }, e.message)); }
    finally { ninaFile.disabled = false; ninaFile.value = ''; }
  });

  function renderReport(fileName, made) {
    const r = made.report;
    const shown = r.entries.filter((e) => e.status !== 'mapped' || e.note);
    const label = { mapped: 'note', approximated: 'approximated', not_mapped: 'not mapped' };
    fill(ninaReport,
      h('p', {}, `${fileName} → `, h('a', { href: `#/templates/${made.template.id}` }, made.template.name),
        `: ${r.mapped} mapped, ${r.approximated} approximated, ${r.not_mapped} not mapped`),
      shown.length ? h('table', { id: 'nina-report-table' },
        h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', {}, 'Place in the NINA file'), h('th', {}, 'NINA type'), h('th', {}, 'Why'))),
        h('tbody', {}, shown.map((e) => h('tr', { class: e.status },
          h('td', {}, label[e.status]), h('td', {}, h('code', {}, e.nina_path || '(top)')),
          h('td', {}, e.nina_type.split('.').pop()), h('td', {}, e.note))))) : h('p', { class: 'muted' }, 'Everything was mapped.'));
  }

  load();
  loadExamples();
  return { element };
}

// ---- coordinates typed as text ----------------------------------------------------------

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)$/;

/**
 * An angle typed by a person, for the echo beside its field only (the daemon reads it itself):
 * a decimal number, or sexagesimal "00 42 44.3", "00:42:44.3", "0h42m44.3s", "+41d16m09s",
 * "+41°16'09\"" (and "10.68d" for degrees given to an RA). Null when it does not read.
 */
export function readAngle(text, hours) {
  const t = String(text).trim().replace(/−/g, '-').replace(/[′’]/g, "'").replace(/″/g, '"');
  if (DECIMAL.test(t)) return Number(t);
  if (hours && /^[+-]?(\d+\.?\d*|\.\d+)\s*d$/i.test(t)) return Number(t.slice(0, -1)) / 15;
  if (!/^[+-]?\s*\d[\d.\s:hdms°'"]*$/i.test(t)) return null;
  const parts = t.match(/\d+(?:\.\d*)?/g);
  if (!parts || parts.length > 3) return null;
  const [a, b = 0, c = 0] = parts.map(Number);
  if (b >= 60 || c >= 60) return null;
  return (t.startsWith('-') ? -1 : 1) * (a + b / 60 + c / 3600);
}

/** The other form of a typed angle: "= 00h42m44.30s" for 0.7123 (hours), "= 0.71231 h" back. */
export function angleEcho(text, hours) {
  const t = String(text).trim();
  const value = t === '' ? null : readAngle(t, hours);
  if (value === null || !Number.isFinite(value)) return '';
  if (DECIMAL.test(t)) return `= ${hours ? formatRa(value) : formatDec(value)}`;
  return `= ${value.toFixed(5)}${hours ? ' h' : '°'}`;
}

/** A text box for an angle with its other form echoed beside it as the person types. */
function angleInput(name, value, placeholder, hours) {
  const echo = h('span', { class: 'muted angle-echo' }, angleEcho(value, hours));
  const input = h('input', { type: 'text', name, value, placeholder, size: 12,
    oninput: () => { echo.textContent = angleEcho(input.value, hours); } });
  return h('span', { class: 'row' }, input, echo);
}

/** A number typed as text: a plain decimal goes out as a number, anything else as the text. */
export function numberOrText(text) {
  const t = text.trim();
  return DECIMAL.test(t) ? Number(t) : t;
}

// ---- the schema -------------------------------------------------------------------------

function refName(ref) { return ref.split('/').pop(); }

class Schema {
  constructor(json) {
    this.json = json;
    this.defs = json.$defs || {};
    this.kinds = {};
    for (const [name, def] of Object.entries(this.defs)) {
      const kind = def.properties && def.properties.kind && def.properties.kind.const;
      if (kind) this.kinds[kind] = name;
    }
  }

  resolve(schema) {
    let s = schema;
    while (s && s.$ref) s = { ...this.defs[refName(s.$ref)], ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== '$ref')) };
    return s;
  }

  defOf(node) {
    const name = this.kinds[node.kind || 'sequential'];
    return name ? this.defs[name] : null;
  }

  /** Kinds a list property accepts (its discriminator mapping). */
  kindsOf(listSchema) {
    const items = listSchema && listSchema.items;
    if (!items) return [];
    if (items.discriminator) return Object.keys(items.discriminator.mapping);
    const one = this.resolve(items);
    return one && one.properties && one.properties.kind ? [one.properties.kind.const] : [];
  }

  isContainer(def) {
    return !!(def && def.properties && def.properties.items && def.properties.triggers);
  }
}

// ---- the editor -------------------------------------------------------------------------

function pathJoin(base, key) { return base ? `${base}.${key}` : key; }

function parentPath(path) {
  const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
  return cut > 0 ? path.slice(0, cut) : '';
}

export function mountEditor(id) {
  const element = h('div', { class: 'editor' }, h('p', { class: 'muted' }, 'Loading…'));
  let closed = false;
  Promise.all([loadSchema(), api(`/api/templates/${id}`)])
    .then(([json, template]) => { if (!closed) new Editor(element, new Schema(json), template).render(); })
    .catch((e) => fill(element, h('p', { class: 'error' }, e.message)));
  return { element, unmount() { closed = true; } };
}

class Editor {
  constructor(element, schema, template) {
    this.element = element;
    this.schema = schema;
    this.template = template;
    this.doc = structuredClone(template.document);
    this.dirty = false;
    this.status = h('span', { id: 'save-status', class: 'muted' });
    this.summary = h('div', { id: 'issues' });
  }

  changed() {
    this.dirty = true;
    this.status.textContent = 'unsaved changes';
  }

  render() {
    const root = this.schema.json;
    const saveButton = h('button', { class: 'control primary', type: 'button', id: 'save', onclick: () => this.save() }, 'Save');
    const revert = h('button', { class: 'control', type: 'button', onclick: () => {
      this.doc = structuredClone(this.template.document); this.dirty = false; this.status.textContent = ''; this.render();
    } }, 'Revert');
    const check = h('button', { type: 'button', onclick: () => this.checkTonight() }, 'Check against tonight');
    const targets = h('div', { class: 'section' },
      (this.doc.targets || []).map((node, i) => this.nodeCard(node, `targets[${i}]`, this.doc.targets, i)),
      this.adder(this.schema.kindsOf(root.properties.targets), (kind) => {
        (this.doc.targets ||= []).push(this.newNode(kind));
      }, 'targets'));
    const tree = h('section', { class: 'card wide' },
      h('div', { class: 'row' }, h('h2', {}, `Template #${this.template.id}`), saveButton, revert, check, this.status),
      this.summary,
      h('div', { class: 'fields' },
        this.field(this.doc, 'name', root.properties.name, 'name', true),
        this.field(this.doc, 'description', root.properties.description, 'description', false)),
      h('div', { class: 'section-title' }, 'Start'), this.nodeCard(this.doc.start ||= {}, 'start'),
      h('div', { class: 'section-title' }, 'Targets'), targets,
      h('div', { class: 'section-title' }, 'End'), this.nodeCard(this.doc.end ||= {}, 'end'));
    fill(this.element, h('div', { class: 'grid' }, tree, this.runPanel()));
    if (!canControl()) {
      // A read-only login may look at the template but not change it.
      for (const el of tree.querySelectorAll('input, select, textarea')) el.disabled = true;
    }
  }

  rerender() { this.changed(); this.render(); }

  newNode(kind) {
    const node = { kind };
    const def = this.schema.defOf(node);
    if (this.schema.isContainer(def)) Object.assign(node, { items: [] });
    return node;
  }

  adder(kinds, add, what) {
    const select = h('select', { dataset: { add: what } }, kinds.map((k) => h('option', { value: k }, k)));
    return h('div', { class: 'row control adder' }, select,
      h('button', { type: 'button', dataset: { addButton: what }, onclick: () => { add(select.value); this.rerender(); } }, `Add ${what.replace(/s$/, '')}`));
  }

  tools(list, index) {
    if (!list) return null;
    const move = (delta) => () => {
      const to = index + delta;
      if (to < 0 || to >= list.length) return;
      [list[index], list[to]] = [list[to], list[index]];
      this.rerender();
    };
    return h('span', { class: 'tools control' },
      h('button', { type: 'button', title: 'move up', disabled: index === 0, onclick: move(-1) }, '↑'),
      h('button', { type: 'button', title: 'move down', disabled: index === list.length - 1, onclick: move(1) }, '↓'),
      h('button', { type: 'button', title: 'remove', class: 'danger', onclick: () => { list.splice(index, 1); this.rerender(); } }, '✕'));
  }

  nodeCard(node, path, list, index) {
    const def = this.schema.defOf(node);
    const container = this.schema.isContainer(def);
    const card = h('div', { class: `node-card${container ? ' container' : ''}`, dataset: { fieldPath: path, kind: node.kind || 'sequential' } },
      h('div', { class: 'node-title' }, h('span', { class: 'kind' }, node.kind || 'sequential'),
        h('span', { class: 'muted' }, node.target_name || node.name || ''), this.tools(list, index)));
    if (!def) {
      card.append(h('div', { class: 'error' }, `unknown kind ${node.kind}`));
      return card;
    }
    const required = new Set(def.required || []);
    const main = [], options = [];
    for (const [key, prop] of Object.entries(def.properties || {})) {
      if (STRUCTURE.has(key)) continue;
      (COMMON.has(key) ? options : main).push(this.field(node, key, prop, pathJoin(path, key), required.has(key)));
    }
    if (main.length) card.append(h('div', { class: 'fields' }, main));
    if (options.length) card.append(h('details', {}, h('summary', { class: 'muted' }, 'name, attempts, on error'), h('div', { class: 'fields' }, options)));
    if (container) {
      for (const part of ['conditions', 'triggers', 'items']) {
        const list = node[part] || [];
        const kinds = this.schema.kindsOf(def.properties[part]);
        card.append(h('div', { class: 'section', dataset: { part } },
          h('div', { class: 'section-title' }, part),
          list.map((child, i) => this.nodeCard(child, `${path}.${part}[${i}]`, list, i)),
          this.adder(kinds, (kind) => { (node[part] ||= []).push(this.newNode(kind)); }, part)));
      }
    }
    return card;
  }

  /** One input for obj[key], typed from its schema; `path` names it for the daemon's 422s. */
  field(obj, key, prop, path, required) {
    let schema = this.schema.resolve(prop);
    let nullable = false;
    if (schema.anyOf) {
      const options = schema.anyOf.filter((o) => o.type !== 'null');
      nullable = options.length < schema.anyOf.length;
      const number = options.find((o) => o.type === 'number');
      if (number && options.length === 2 && options.some((o) => o.type === 'string')) {
        // A number that may also be typed as text (coordinates: "00 42 44.3").
        schema = { ...schema, ...number, anyOf: undefined, text: true };
      } else {
        schema = options.length === 1 ? { ...schema, ...this.schema.resolve(options[0]), anyOf: undefined }
          : { ...schema, type: 'string', anyOf: undefined, choices: options.flatMap((o) => o.enum || []) };
      }
    }
    const title = [schema.description, prop.description].filter(Boolean)[0] || '';
    const wrap = (input) => h('label', { class: 'field', dataset: { fieldPath: path }, title },
      h('span', {}, key + (required ? ' *' : '')), input);
    const set = (value) => {
      if (value === undefined) delete obj[key]; else obj[key] = value;
      this.changed();
    };
    const current = obj[key];
    const fallback = prop.default !== undefined ? prop.default : schema.default;
    const placeholder = fallback !== undefined && fallback !== null ? String(fallback) : (schema.choices || []).join(' / ');

    if (schema.enum) {
      const select = h('select', { name: path },
        required ? null : h('option', { value: '' }, fallback !== undefined && fallback !== null ? `(default: ${fallback})` : '(none)'),
        schema.enum.map((v) => h('option', { value: String(v), selected: current === v }, String(v))));
      select.addEventListener('change', () => set(select.value === '' ? undefined : schema.enum.find((v) => String(v) === select.value)));
      return wrap(select);
    }
    if (schema.type === 'boolean') {
      const box = h('input', { type: 'checkbox', name: path, checked: current ?? fallback ?? false });
      box.addEventListener('change', () => set(box.checked));
      return wrap(box);
    }
    if (schema.type === 'integer' || schema.type === 'number') {
      const limits = [schema.minimum !== undefined ? `≥ ${schema.minimum}` : '', schema.exclusiveMinimum !== undefined ? `> ${schema.exclusiveMinimum}` : '',
        schema.maximum !== undefined ? `≤ ${schema.maximum}` : '', schema.exclusiveMaximum !== undefined ? `< ${schema.exclusiveMaximum}` : ''].filter(Boolean).join(', ');
      if (schema.text) {
        const hours = key.endsWith('_hours');
        const forms = hours ? '00 42 44.3, 0h42m44.3s or 0.7123' : '+41 16 09, +41d16m09s or 41.269';
        const input = h('input', { type: 'text', name: path, placeholder: placeholder || forms, value: current ?? '',
          title: [limits, forms].filter(Boolean).join('; '), autocomplete: 'off', spellcheck: false });
        const echo = h('span', { class: 'angle-echo muted' }, angleEcho(input.value, hours));
        input.addEventListener('input', () => {
          set(input.value.trim() === '' ? undefined : numberOrText(input.value));
          echo.textContent = angleEcho(input.value, hours);
        });
        return wrap([input, echo]);
      }
      const input = h('input', { type: 'number', step: 'any', name: path, placeholder, value: current ?? '', title: limits });
      input.addEventListener('input', () => {
        if (input.value === '') set(undefined);
        else set(Number(input.value));
      });
      return wrap(input);
    }
    if (schema.type === 'string') {
      const input = key === 'description' || key === 'text'
        ? h('textarea', { name: path, rows: 2, cols: 50, placeholder, value: current ?? '' })
        : h('input', { type: 'text', name: path, placeholder, value: current ?? '' });
      input.addEventListener('input', () => set(input.value === '' && !required ? undefined : input.value));
      return wrap(input);
    }
    if (schema.type === 'array' && schema.items && ['string', 'number', 'integer'].includes(schema.items.type)) {
      const numeric = schema.items.type !== 'string';
      const input = h('input', { type: 'text', name: path, placeholder: 'comma separated', value: (current || []).join(', ') });
      input.addEventListener('input', () => {
        const parts = input.value.split(',').map((p) => p.trim()).filter(Boolean);
        set(input.value.trim() === '' && !required ? undefined : parts.map((p) => (numeric ? Number(p) : p)));
      });
      return wrap(input);
    }
    if (schema.type === 'object' && schema.properties) {
      const inner = current && typeof current === 'object' ? current : {};
      const sub = this.schema.resolve(schema);
      const requiredInner = new Set(sub.required || []);
      const fieldset = h('fieldset', { class: 'field', dataset: { fieldPath: path }, title });
      const refresh = () => {
        fill(fieldset, h('legend', {}, key + (required ? ' *' : '')));
        if (nullable || !required) {
          const on = h('input', { type: 'checkbox', checked: obj[key] !== undefined && obj[key] !== null });
          on.addEventListener('change', () => { set(on.checked ? {} : undefined); refresh(); });
          fieldset.append(h('label', { class: 'muted' }, on, ' set'));
          if (obj[key] === undefined || obj[key] === null) return;
        }
        const target = obj[key] && typeof obj[key] === 'object' ? obj[key] : inner;
        if (obj[key] !== target) obj[key] = target;
        for (const [k, p] of Object.entries(sub.properties)) {
          fieldset.append(this.field(target, k, p, pathJoin(path, k), requiredInner.has(k)));
        }
      };
      if (required && (current === undefined || current === null)) {
        // An absent required object is shown empty; it enters the document on the first edit.
        const holder = {};
        fieldset.append(h('legend', {}, key + ' *'));
        for (const [k, p] of Object.entries(sub.properties)) {
          const f = this.field(holder, k, p, pathJoin(path, k), requiredInner.has(k));
          f.addEventListener('input', () => { obj[key] = holder; });
          f.addEventListener('change', () => { obj[key] = holder; });
          fieldset.append(f);
        }
        return fieldset;
      }
      refresh();
      return fieldset;
    }
    const area = h('textarea', { name: path, rows: 2, cols: 40, value: current === undefined ? '' : JSON.stringify(current) });
    area.addEventListener('change', () => {
      try { set(area.value.trim() === '' ? undefined : JSON.parse(area.value)); area.setCustomValidity(''); }
      catch { area.setCustomValidity('not JSON'); area.reportValidity(); }
    });
    return wrap(area);
  }

  clearIssues() {
    for (const el of this.element.querySelectorAll('.field-error')) el.remove();
    for (const el of this.element.querySelectorAll('.invalid')) el.classList.remove('invalid');
    clear(this.summary);
  }

  /** Each problem beside the field its path names (or the nearest node that exists). */
  showIssues(issues, heading) {
    this.clearIssues();
    if (!issues.length) return;
    const cards = new Map([...this.element.querySelectorAll('[data-field-path]')].map((el) => [el.dataset.fieldPath, el]));
    const unplaced = [];
    for (const issue of issues) {
      let path = issue.path;
      while (path && !cards.has(path)) path = parentPath(path);
      const text = issue.fix ? `${issue.message} — ${issue.fix}` : issue.message;
      const message = h('div', { class: 'field-error', dataset: { issuePath: issue.path } },
        path === issue.path ? text : `${issue.path}: ${text}`);
      const target = cards.get(path);
      if (!target) { unplaced.push(message); continue; }
      target.classList.add('invalid');
      if (target.classList.contains('node-card')) target.querySelector('.node-title').after(message);
      else target.append(message);
      for (let up = target.parentElement; up; up = up.parentElement) {
        if (up.tagName === 'DETAILS') up.open = true;
      }
    }
    fill(this.summary, h('div', { class: 'error' }, heading),
      h('ul', { class: 'issues' }, issues.map((i) => h('li', {}, h('code', {}, i.path || '(document)'), ' ', i.message))), unplaced);
  }

  async save() {
    this.status.textContent = 'saving…';
    try {
      const saved = await api(`/api/templates/${this.template.id}`, { method: 'PUT', body: { document: this.doc } });
      this.template = saved;
      this.doc = structuredClone(saved.document);
      this.dirty = false;
      this.render();
      this.status.textContent = 'saved';
    } catch (e) {
      this.status.textContent = `not saved (HTTP ${e.status})`;
      if (e.status === 422 && Array.isArray(e.detail)) {
        this.showIssues(e.detail.map(toIssue), 'The daemon refused the template:');
      } else {
        notice(e.message);
      }
    }
  }

  async checkTonight() {
    if (this.dirty) { notice('Save the template first.'); return; }
    try {
      const issues = await api(`/api/templates/${this.template.id}/issues`);
      if (issues.length) this.showIssues(issues, 'Would fail tonight with the connected equipment:');
      else { this.clearIssues(); this.status.textContent = 'ready to run tonight'; }
    } catch (e) { notice(e.message); }
  }

  runPanel() {
    const rows = h('tbody', { id: 'run-targets' });
    const first = (this.doc.targets || []).find((t) => t.kind === 'target');
    const addRow = (name = '', ra = '', dec = '') => {
      const tr = h('tr', {},
        h('td', {}, h('input', { type: 'text', name: 'target-name', value: name, placeholder: 'M31' })),
        h('td', {}, angleInput('target-ra', ra, '00 42 44.3', true)),
        h('td', {}, angleInput('target-dec', dec, '+41 16 09', false)),
        h('td', {}, h('button', { type: 'button', onclick: () => tr.remove() }, '✕')));
      rows.append(tr);
    };
    if (first && first.coordinates) addRow(first.target_name, first.coordinates.ra_hours, first.coordinates.dec_deg);
    const result = h('div', { id: 'run-result' });
    const startButton = h('button', { class: 'primary', type: 'button', id: 'run-start' }, 'Start run');
    const start = async (ignore) => {
      if (this.dirty) { notice('Save the template first: a run starts from the saved template.'); return; }
      const targets = [...rows.querySelectorAll('tr')].map((tr) => ({
        name: tr.querySelector('[name=target-name]').value.trim(),
        ra_hours: numberOrText(tr.querySelector('[name=target-ra]').value),
        dec_deg: numberOrText(tr.querySelector('[name=target-dec]').value),
      })).filter((t) => t.name);
      clear(result);
      startButton.disabled = true;
      try {
        const run = await api('/api/runs', { method: 'POST', body: { template_id: this.template.id, targets, ignore_issues: ignore } });
        location.hash = '#/dashboard';
      } catch (e) {
        if (e.status === 409 && e.detail && e.detail.issues) {
          result.append(h('p', { class: 'error' }, e.detail.message),
            h('ul', { class: 'issues' }, e.detail.issues.map((i) => h('li', {}, h('code', {}, i.path), ' ', i.message, i.fix ? ` — ${i.fix}` : ''))),
            h('button', { type: 'button', class: 'danger', id: 'run-start-anyway', onclick: () => start(true) }, 'Start anyway (ignore issues)'));
        } else {
          result.append(h('p', { class: 'error' }, e.status === 422 ? describe(e.detail) : e.message));
        }
      } finally { startButton.disabled = false; }
    };
    startButton.addEventListener('click', () => start(false));
    return h('section', { class: 'card wide control', id: 'run-panel' }, h('h2', {}, 'Start a run'),
      h('p', { class: 'muted' }, 'Targets dropped in replace the first target container (one copy per target).'),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'RA (hours or 00 42 44.3)'), h('th', {}, 'Dec (degrees or +41 16 09)'), h('th', {}))), rows),
      h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => addRow() }, 'Add target'), startButton),
      result);
  }
}

function toIssue(d) {
  if (d.path !== undefined) return { path: d.path, message: d.msg, fix: d.fix };
  const loc = (d.loc || []).filter((p) => p !== 'body' && p !== 'document');
  const path = loc.reduce((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${p}` : String(p)), '');
  return { path, message: d.msg, fix: '' };
}

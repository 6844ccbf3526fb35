// Processing jobs: state, stage and progress, and the stacked result's preview once done.
import { api } from './api.js';
import { h, clear, fill, dateTime, badge, progressBar } from './dom.js';

export function mount() {
  const box = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const element = h('div', { class: 'grid' }, h('section', { class: 'card wide' }, h('h2', {}, 'Processing jobs'), box));
  let timer = null;

  async function load() {
    let jobs;
    try { jobs = await api('/api/processing/jobs'); }
    catch (e) { fill(box, h('p', { class: 'error' }, e.message)); return; }
    render(box, jobs);
    const busy = jobs.some((j) => j.state === 'queued' || j.state === 'running');
    timer = setTimeout(load, busy ? 2000 : 10000);
  }
  load();
  return { element, unmount() { clearTimeout(timer); } };
}

function render(box, jobs) {
  if (!jobs.length) { fill(box, h('p', { class: 'muted' }, 'No processing job yet: a finished run queues one per night.')); return; }
  fill(box, jobs.map((j) => {
    const groups = (j.outputs && j.outputs.groups) || [];
    // A group that kept fewer than half of its lights: say so above the previews.
    const warnings = (j.outputs && j.outputs.warnings) || [];
    return h('div', { class: 'device', dataset: { jobId: String(j.id) } },
      h('div', { class: 'row' }, h('strong', {}, `Job #${j.id}`), badge(j.state),
        h('span', { class: 'muted' }, j.session_id ? `night #${j.session_id}` : j.folder || ''),
        h('span', {}, j.stage || ''), progressBar(j.progress), h('span', { class: 'muted' }, `${Math.round(j.progress * 100)} %`),
        h('span', { class: 'muted' }, `queued ${dateTime(j.created_at)}${j.finished_at ? `, done ${dateTime(j.finished_at)}` : ''}`)),
      j.error ? h('div', { class: 'error' }, j.error) : null,
      warnings.map((w) => h('div', { class: 'warning', role: 'alert', style: 'color: var(--warn); font-weight: bold' }, `⚠ ${w}`)),
      groups.length ? h('div', { class: 'thumbs' }, groups.map((g) => h('figure', {},
        j.state === 'done' ? h('img', { src: `/api/processing/jobs/${j.id}/groups/${encodeURIComponent(g.name)}/jpeg`, alt: g.name, loading: 'lazy' }) : null,
        h('figcaption', {}, `${g.name}: ${g.integrated ?? '?'} lights `,
          h('a', { href: `/api/processing/jobs/${j.id}/groups/${encodeURIComponent(g.name)}/fits` }, 'FITS'), ' ',
          h('a', { href: `/api/processing/jobs/${j.id}/groups/${encodeURIComponent(g.name)}/xisf` }, 'XISF'))))) : null);
  }));
}

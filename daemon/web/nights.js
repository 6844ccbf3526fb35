// Nights (imaging sessions), their frames with quality figures and verdicts, and a preview.
import { api } from './api.js';
import { h, clear, fill, fmt, time, dateTime, badge } from './dom.js';

const PAGE = 100;

export function mount(sessionId) {
  const sessions = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const frames = h('div', { id: 'frames' });
  const preview = h('div', { class: 'preview', id: 'night-preview' }, h('p', { class: 'muted' }, 'Choose a frame.'));
  const element = h('div', { class: 'grid' },
    h('section', { class: 'card wide' }, h('h2', {}, 'Nights'), sessions),
    sessionId ? h('section', { class: 'card wide' }, h('h2', {}, `Frames of night #${sessionId}`), frames) : null,
    sessionId ? h('section', { class: 'card wide' }, h('h2', {}, 'Preview'), preview) : null);

  api('/api/sessions').then((list) => {
    if (!list.length) { fill(sessions, h('p', { class: 'muted' }, 'No night yet.')); return; }
    fill(sessions, h('table', {},
      h('thead', {}, h('tr', {}, ['Night', 'Profile', 'State', 'Started', 'Ended', 'Frames', 'Accepted lights'].map((t) => h('th', {}, t)))),
      h('tbody', {}, list.map((n) => h('tr', { class: `clickable${n.id === sessionId ? ' selected' : ''}`, onclick: () => { location.hash = `#/nights/${n.id}`; } },
        h('td', {}, h('a', { href: `#/nights/${n.id}` }, n.night_date)), h('td', {}, n.profile), h('td', {}, badge(n.state)),
        h('td', {}, dateTime(n.started_at)), h('td', {}, dateTime(n.ended_at)), h('td', {}, n.frames), h('td', {}, n.accepted_lights))))));
  }).catch((e) => fill(sessions, h('p', { class: 'error' }, e.message)));

  if (sessionId) loadFrames(sessionId, 0, frames, preview);
  return { element };
}

async function loadFrames(sessionId, offset, box, preview) {
  let page;
  try { page = await api(`/api/sessions/${sessionId}/frames?limit=${PAGE}&offset=${offset}`); }
  catch (e) { fill(box, h('p', { class: 'error' }, e.message)); return; }
  const head = ['Time', 'Type', 'Filter', 'Exp (s)', 'HFR (px)', 'HFR (″)', 'Stars', 'FWHM (px)', 'Ecc.', 'Guiding RMS (″)', 'Verdict'];
  const body = h('tbody', {});
  for (const f of page.items) {
    const tr = h('tr', { class: 'clickable', dataset: { frameId: String(f.id) } },
      h('td', {}, time(f.exposure_start_utc)), h('td', {}, f.frame_type), h('td', {}, f.filter_name ?? '—'),
      h('td', {}, f.exposure_s), h('td', {}, fmt(f.hfr_px)), h('td', {}, fmt(f.hfr_arcsec)), h('td', {}, f.star_count ?? '—'),
      h('td', {}, fmt(f.fwhm_px)), h('td', {}, fmt(f.eccentricity)), h('td', {}, fmt(f.guiding_rms_arcsec)),
      h('td', {}, f.accepted ? badge('accepted', 'ok') : [badge('rejected'), ' ', h('span', { class: 'muted' }, f.reject_reason || '')]));
    tr.addEventListener('click', () => {
      for (const row of body.querySelectorAll('tr.selected')) row.classList.remove('selected');
      tr.classList.add('selected');
      fill(preview, 
        h('img', { src: `/api/frames/${f.id}/preview.jpg`, alt: `frame ${f.id}` }),
        h('p', {}, f.path, ' · ', h('a', { href: `/api/frames/${f.id}/fits` }, 'FITS')));
    });
    body.append(tr);
  }
  const pager = h('div', { class: 'row' },
    h('span', { class: 'muted' }, `${page.total ? offset + 1 : 0}–${offset + page.items.length} of ${page.total}`),
    h('button', { type: 'button', disabled: offset === 0, onclick: () => loadFrames(sessionId, Math.max(0, offset - PAGE), box, preview) }, '‹ earlier'),
    h('button', { type: 'button', disabled: offset + PAGE >= page.total, onclick: () => loadFrames(sessionId, offset + PAGE, box, preview) }, 'later ›'));
  fill(box, pager, h('div', { style: 'overflow-x: auto' }, h('table', {}, h('thead', {}, h('tr', {}, head.map((t) => h('th', {}, t)))), body)));
}

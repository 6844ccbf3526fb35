// Hand-drawn SVG line graphs: values over the time of the night.
import { s, h } from './dom.js';

const W = 600, H = 180, PAD = { left: 42, right: 10, top: 10, bottom: 22 };

/**
 * points: [{t: Date, v: number, bad: bool}] (null values are skipped).
 * Rejected frames (bad) are drawn as red dots on the line.
 */
export function lineChart(points, { label, unit = '', color = '#5b9bd9', digits = 2 }) {
  const data = points.filter((p) => p.v !== null && p.v !== undefined && !Number.isNaN(p.v));
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`,
    role: 'img', 'aria-label': label });
  svg.append(s('line', { class: 'axis', x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }));
  svg.append(s('line', { class: 'axis', x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }));
  if (data.length === 0) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, `no ${label} yet`));
    return h('div', {}, h('div', { class: 'muted' }, label), svg);
  }
  const ts = data.map((p) => p.t.getTime());
  const vs = data.map((p) => p.v);
  let t0 = Math.min(...ts), t1 = Math.max(...ts);
  if (t1 === t0) { t0 -= 60000; t1 += 60000; }
  let v0 = Math.min(...vs), v1 = Math.max(...vs);
  const margin = (v1 - v0) * 0.1 || Math.abs(v1) * 0.1 || 1;
  v0 = Math.max(0, v0 - margin); v1 += margin;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - ((v - v0) / (v1 - v0)) * (H - PAD.top - PAD.bottom);
  const path = data.map((p, i) => `${i ? 'L' : 'M'}${x(p.t.getTime()).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
  svg.append(s('path', { class: 'line', d: path, stroke: color }));
  for (const p of data) {
    svg.append(s('circle', { cx: x(p.t.getTime()), cy: y(p.v), r: p.bad ? 3.5 : 2.2,
      fill: p.bad ? '#e0605a' : color },
      s('title', {}, `${p.t.toLocaleTimeString([], { hour12: false })}: ${p.v.toFixed(digits)}${unit}${p.bad ? ' (rejected)' : ''}`)));
  }
  for (const v of [v0, (v0 + v1) / 2, v1]) {
    svg.append(s('text', { x: PAD.left - 4, y: y(v) + 3, 'text-anchor': 'end' }, v.toFixed(digits)));
  }
  const fmtT = (t) => new Date(t).toLocaleTimeString([], { hour12: false, hour: '2-digit', minute: '2-digit' });
  svg.append(s('text', { x: PAD.left, y: H - 6 }, fmtT(t0)));
  svg.append(s('text', { x: W - PAD.right, y: H - 6, 'text-anchor': 'end' }, fmtT(t1)));
  const last = data[data.length - 1].v;
  return h('div', {}, h('div', { class: 'muted' }, `${label}: last ${last.toFixed(digits)}${unit}, ${data.length} frames`), svg);
}

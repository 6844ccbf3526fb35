// Imaging: the page's view.
import { h } from './dom.js';

export function mount() {
  const element = h('div', { class: 'grid' }, h('section', { class: 'card wide' }, h('h2', {}, 'Imaging')));
  return { element };
}

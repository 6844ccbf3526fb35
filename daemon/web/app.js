// The single page: hash routes, the login form and the read-only role.
import { api, onAuthProblems } from './api.js';
import { clear, setSiteZone } from './dom.js';
import { notice } from './ui.js';
import * as dashboard from './dashboard.js';
import * as templates from './templates.js';
import * as nights from './nights.js';
import * as processing from './processing.js';
import * as plans from './plans.js';
import * as imaging from './imaging.js';
import * as framing from './framing.js';
import * as equipment from './equipment.js';
import * as logs from './logs.js';

const routes = [
  [/^#\/templates\/(\d+)$/, 'templates', (m) => templates.mountEditor(Number(m[1]))],
  [/^#\/templates$/, 'templates', () => templates.mountList()],
  [/^#\/nights\/(\d+)$/, 'nights', (m) => nights.mount(Number(m[1]))],
  [/^#\/nights$/, 'nights', () => nights.mount(null)],
  [/^#\/processing$/, 'processing', () => processing.mount()],
  [/^#\/plans\/(\d+)$/, 'plans', (m) => plans.mount(Number(m[1]))],
  [/^#\/plans$/, 'plans', () => plans.mount(null)],
  [/^#\/imaging$/, 'imaging', () => imaging.mount()],
  [/^#\/framing$/, 'framing', () => framing.mount()],
  [/^#\/equipment$/, 'equipment', () => equipment.mount()],
  [/^#\/logs$/, 'logs', () => logs.mount()],
  [/^(#\/dashboard)?$/, 'dashboard', () => dashboard.mount()],
];

let unmount = null;

function route() {
  if (unmount) { unmount(); unmount = null; }
  notice('');
  const main = clear(document.getElementById('main'));
  const hash = location.hash || '#/dashboard';
  for (const [pattern, nav, mount] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const a of document.querySelectorAll('nav a')) {
      a.classList.toggle('active', a.dataset.nav === nav);
    }
    const view = mount(match);
    main.append(view.element);
    unmount = view.unmount || null;
    return;
  }
  main.textContent = 'No such page.';
}

function showLogin() {
  document.getElementById('login').hidden = false;
  document.querySelector('#login input[name=token]').focus();
}

async function logIn(event) {
  event.preventDefault();
  const token = new FormData(event.target).get('token');
  const error = document.getElementById('login-error');
  const reply = await fetch('/api/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    credentials: 'same-origin',
    body: JSON.stringify({ token }),
  });
  if (reply.ok) { location.reload(); return; }
  error.textContent = reply.status === 401 ? 'Wrong token.' : `Login failed (HTTP ${reply.status}).`;
  error.hidden = false;
}

async function logOut() {
  await fetch('/api/auth/logout', { method: 'POST', credentials: 'same-origin' });
  location.reload();
}

/** Who we are: /api/auth/me, or no authentication at all when the daemon has none (404). */
async function loadRole() {
  let me = { role: 'control', auth_required: false };
  try {
    me = await api('/api/auth/me');
  } catch (e) {
    if (e.status === 401) me = { role: 'none', auth_required: true };
    else if (e.status !== 404) notice(`Could not ask who is logged in: ${e.message}`);
  }
  document.body.dataset.role = me.role;
  document.getElementById('role').textContent = me.auth_required ? `role: ${me.role}` : '';
  document.getElementById('logout').hidden = !(me.auth_required && me.role !== 'none');
  return me;
}

async function start() {
  onAuthProblems(showLogin, (e) => notice(`Not allowed: ${e.message}`));
  document.getElementById('login-form').addEventListener('submit', logIn);
  document.getElementById('logout').addEventListener('click', logOut);
  const me = await loadRole();
  if (me.auth_required && me.role === 'none') { showLogin(); return; }
  // Every page shows times in the site's zone (with UTC beside), whichever page opens first.
  try { setSiteZone((await api('/api/health')).timezone); } catch { /* the browser's own zone */ }
  window.addEventListener('hashchange', route);
  route();
}

start();

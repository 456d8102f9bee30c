// Entity Inspector: one script, no dependencies, no build step. Routes on location.pathname,
// reads the herald's JSON API, and builds every element with DOM calls: data from the pipeline
// (IDs, metadata, messages) only ever becomes text nodes or attribute values, never markup.
'use strict';

(function () {
  const SETTINGS = readSettings();
  // The event name that marks a failure; the herald writes its own spelling into the settings.
  const ERROR_EVENT = SETTINGS.error_event;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const app = document.getElementById('app');
  let liveTimer = null;
  if (SETTINGS.auth) addSignOut();

  // With auth on, the header offers to end the session (a same-origin form POST).
  function addSignOut() {
    const header = document.querySelector('header.top');
    if (!header) return;
    const form = document.createElement('form');
    form.className = 'sign-out';
    form.method = 'post';
    form.action = '/sign-out';
    const button = document.createElement('button');
    button.type = 'submit';
    button.className = 'secondary';
    button.id = 'sign-out';
    button.textContent = 'Sign out';
    form.appendChild(button);
    header.appendChild(form);
  }

  function readSettings() {
    const el = document.getElementById('inspector-settings');
    try { return JSON.parse(el ? el.textContent : '{}') || {}; } catch (e) { return {}; }
  }

  // ---- DOM helpers: text only ------------------------------------------------------------

  function append(parent, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) { append(parent, child); continue; }
      parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return parent;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, String(v));
    }
    return el;
  }

  function h(tag, attrs, ...children) {
    return append(setAttrs(document.createElement(tag), attrs), children);
  }

  function s(tag, attrs, ...children) {
    return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

  function entityHref(id) { return '/entity/' + encodeURIComponent(id); }
  function entityLink(id, text) { return h('a', { href: entityHref(id), class: 'id entity-link' }, text === undefined ? id : text); }
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v === null || v === undefined || v === '') continue;
      if (Array.isArray(v)) v.forEach((x) => q.append(k, x)); else q.append(k, String(v));
    }
    const t = q.toString();
    return t ? '?' + t : '';
  }

  // Times are ns since the epoch (~1.7e18), beyond the 2^53 up to which a double holds every
  // integer: parsed as numbers they are rounded to 256 ns, and two instants a few ns apart (or
  // t0 + 1) become equal. With `exactNs` the digits of every `…_ns` integer are kept as a string
  // instead. A `"` inside a JSON string is always escaped, so `{"` or `,"` only ever opens a key
  // and no string value can be rewritten.
  const NS_FIELD = /([{,]\s*"[A-Za-z0-9_]*_ns"\s*:\s*)(-?\d+)(?=\s*[,}])/g;

  async function api(path, params, options) {
    const res = await fetch(path + query(params || {}), { headers: { accept: 'application/json' } });
    const exact = options && options.exactNs;
    let body = null;
    try {
      const text = await res.text();
      body = JSON.parse(exact ? text.replace(NS_FIELD, '$1"$2"') : text);
    } catch (e) { body = null; }
    if (res.status === 401 && SETTINGS.auth) {
      // The session ended (token expired or keys rotated): sign in again, then come back here.
      location.assign('/sign-in?next=' + encodeURIComponent(location.pathname + location.search));
    }
    if (!res.ok) {
      const err = new Error((body && body.error) || ('HTTP ' + res.status));
      err.status = res.status;
      throw err;
    }
    return body;
  }

  function fmtTime(ns) {
    if (ns === null || ns === undefined) return '–';
    const d = new Date(Number(ns) / 1e6);
    if (isNaN(d.getTime())) return String(ns);
    return d.toISOString().replace('T', ' ').replace('Z', ' UTC');
  }
  function fmtDur(ns) {
    ns = Number(ns);
    if (!isFinite(ns)) return '–';
    if (ns < 1e3) return Math.round(ns) + ' ns';
    if (ns < 1e6) return (ns / 1e3).toFixed(1) + ' µs';
    if (ns < 1e9) return (ns / 1e6).toFixed(1) + ' ms';
    if (ns < 120e9) return (ns / 1e9).toFixed(2) + ' s';
    if (ns < 2 * 3600e9) return (ns / 60e9).toFixed(1) + ' min';
    if (ns < 48 * 3600e9) return (ns / 3600e9).toFixed(1) + ' h';
    return (ns / 86400e9).toFixed(1) + ' d';
  }
  // `a - b` in ns, exact, for two times given as digit strings (see `exactNs`) or numbers.
  // Subtracting first keeps the result small, so the double that comes out holds it exactly.
  function nsSince(a, b) { return Number(BigInt(a) - BigInt(b)); }
  function earliest(times) { return times.reduce((min, t) => (BigInt(t) < BigInt(min) ? t : min)); }
  function shortId(id, n) { n = n || 26; return id.length > n ? id.slice(0, n - 1) + '…' : id; }
  function statusBadge(status) { return h('span', { class: 'badge ' + (status === 'error' ? 'error' : 'ok') }, status || 'ok'); }
  function errorBox(err) { return h('p', { class: 'error-text' }, 'Could not load: ' + (err && err.message ? err.message : String(err))); }
  const WINDOWS = { '15m': 900e9, '1h': 3600e9, '6h': 6 * 3600e9, '24h': 24 * 3600e9, '7d': 7 * 24 * 3600e9, '30d': 30 * 24 * 3600e9 };
  function nowNs() { return Date.now() * 1e6; }

  // The default window of a page that shows data up to now (docs/inspector.md): the page's usual
  // window, unless the newest data is older than it; then the smallest offered window that holds
  // the newest data with a tenth of the window to spare; if even the largest does not, the
  // largest, ending just after the newest data. `toNs` is null for "up to now".
  function defaultWindow(newestNs, offered, usual) {
    const age = newestNs === null || newestNs === undefined ? 0 : nowNs() - Number(newestNs);
    const holds = (w) => age <= 0.9 * WINDOWS[w];
    const pick = holds(usual) ? usual : offered.find((w) => WINDOWS[w] > WINDOWS[usual] && holds(w));
    if (pick) return { win: pick, toNs: null, age: age };
    const largest = offered[offered.length - 1];
    return { win: largest, toNs: Number(newestNs) + 0.05 * WINDOWS[largest], age: age };
  }
  function windowNote(choice, usual) {
    if (choice.toNs !== null) return 'The newest data is ' + fmtDur(choice.age) + ' old: showing the ' + choice.win + ' up to it.';
    if (choice.win !== usual) return 'The newest data is ' + fmtDur(choice.age) + ' old, so the window is ' + choice.win + ' rather than ' + usual + '.';
    return null;
  }

  function metadataTable(meta) {
    const keys = Object.keys(meta || {}).sort();
    if (!keys.length) return h('p', { class: 'muted' }, 'No metadata.');
    return h('table', { class: 'kv metadata' }, h('tbody', null, keys.map((k) => h('tr', null, h('td', null, k), h('td', null, meta[k])))));
  }

  async function instrumentsList() {
    try { return await api('/api/v1/instruments'); } catch (e) { return []; }
  }

  function instrumentSelect(name, instruments, current, allowAll) {
    const sel = h('select', { name: name });
    if (allowAll) sel.appendChild(h('option', { value: '' }, 'any'));
    for (const i of instruments) {
      const opt = h('option', { value: i }, i);
      if (i === current) opt.selected = true;
      sel.appendChild(opt);
    }
    return sel;
  }

  function windowSelect(current) {
    const sel = h('select', { name: 'window' });
    for (const w of Object.keys(WINDOWS)) {
      const opt = h('option', { value: w }, 'last ' + w);
      if (w === current) opt.selected = true;
      sel.appendChild(opt);
    }
    return sel;
  }

  // ---- router ------------------------------------------------------------------------------

  // The rest of the path after `prefix`, percent-decoded (as typed when it does not decode).
  function pathTail(path, prefix) {
    const raw = path.slice(prefix.length);
    try { return decodeURIComponent(raw); } catch (e) { return raw; }
  }

  function route() {
    if (liveTimer) { clearInterval(liveTimer); liveTimer = null; }
    const path = location.pathname;
    const params = new URLSearchParams(location.search);
    let nav = 'search';
    let page;
    if (path.startsWith('/entity/')) {
      const id = pathTail(path, '/entity/');
      page = () => entityPage(id, params);
    } else if (path === '/errors') { nav = 'errors'; page = () => errorsPage(params); }
    else if (path === '/notifications') { nav = 'notifications'; page = () => notificationsPage(params); }
    else if (path === '/monitor') { nav = 'monitor'; page = () => monitorPage(params); }
    else if (path === '/instruments') { nav = 'instruments'; page = () => instrumentsPage(); }
    else if (path === '/traces') { nav = 'traces'; page = () => tracesPage(params); }
    else if (path === '/logs') { nav = 'logs'; page = () => logsPage(params); }
    else if (path === '/health') { nav = 'health'; page = () => healthPage(); }
    else if (path.startsWith('/trace/')) {
      nav = 'traces';
      const id = pathTail(path, '/trace/');
      page = () => tracePage(id, params);
    }
    else if (path.startsWith('/instrument/')) {
      nav = 'instruments';
      const name = pathTail(path, '/instrument/');
      page = () => instrumentPage(name, params);
    } else { page = () => searchPage(params); }
    for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.nav === nav);
    clear(app);
    document.body.dataset.page = nav === 'search' && path.startsWith('/entity/') ? 'entity' : path.startsWith('/trace/') ? 'trace' : nav;
    if (path !== '/health') checkDegraded();
    page().then(() => { document.body.dataset.ready = 'true'; }, (err) => {
      app.appendChild(errorBox(err));
      document.body.dataset.ready = 'true';
    });
  }

  // ---- 1. search / home --------------------------------------------------------------------

  function entityTable(entities) {
    return h('table', { class: 'entities' },
      h('thead', null, h('tr', null, ['ID', 'instrument', 'stage', 'status', 'created'].map((c) => h('th', null, c)))),
      h('tbody', null, entities.map(entityRow)));
  }
  function entityRow(e) {
    return h('tr', null,
      h('td', null, entityLink(e.id), e.placeholder ? [' ', h('span', { class: 'badge placeholder' }, 'placeholder')] : null),
      h('td', null, e.instrument_id), h('td', null, e.stage || '–'), h('td', null, statusBadge(e.status)),
      h('td', null, fmtTime(e.timestamp_ns)));
  }

  function parseLocalTime(text) {
    if (!text) return null;
    const ms = Date.parse(text.endsWith('Z') ? text : text + 'Z');
    return isNaN(ms) ? null : ms * 1e6;
  }

  async function searchPage(params) {
    document.title = 'Search · Entity Inspector';
    const instruments = await instrumentsList();
    const q = params.get('q') || '';
    const match = params.get('match') === 'exact' ? 'exact' : 'prefix';
    const metas = params.getAll('meta').filter((m) => m.includes('='));
    const matchSel = h('select', { name: 'match' }, h('option', { value: 'prefix' }, 'ID prefix'), h('option', { value: 'exact' }, 'exact ID'));
    matchSel.value = match;
    const statusSel = h('select', { name: 'status' }, ['', 'ok', 'error'].map((v) => h('option', { value: v }, v || 'any')));
    statusSel.value = params.get('status') || '';
    const suspectSel = h('select', { name: 'suspect', id: 'search-suspect' }, h('option', { value: '' }, 'any'),
      h('option', { value: 'true' }, 'suspect (flagged upstream)'), h('option', { value: 'false' }, 'not suspect'));
    suspectSel.value = ['true', 'false'].includes(params.get('suspect')) ? params.get('suspect') : '';
    const form = h('form', { class: 'filters card', method: 'get', action: '/', id: 'search-form' },
      h('label', null, 'Entity ID', h('input', { name: 'q', value: q, size: 30, placeholder: 'cand-… or an exact ID', id: 'search-q' })),
      h('label', null, 'match', matchSel),
      h('label', null, 'instrument', instrumentSelect('instrument', instruments, params.get('instrument') || '', true)),
      h('label', null, 'stage', h('input', { name: 'stage', value: params.get('stage') || '', size: 12 })),
      h('label', null, 'status', statusSel),
      h('label', null, 'suspicion', suspectSel),
      h('label', null, 'from (UTC)', h('input', { name: 'from', type: 'datetime-local', value: params.get('from') || '' })),
      h('label', null, 'to (UTC)', h('input', { name: 'to', type: 'datetime-local', value: params.get('to') || '' })),
      h('label', null, 'metadata key=value', h('input', { name: 'meta', value: metas[0] || '', size: 16, placeholder: 'beam=3' })),
      metas.slice(1).map((m) => h('input', { type: 'hidden', name: 'meta', value: m })),
      h('button', { type: 'submit', id: 'search-submit' }, 'Search'));
    app.appendChild(h('h1', null, 'Find an entity'));
    app.appendChild(form);

    const filtered = q || params.get('instrument') || params.get('stage') || params.get('status') || suspectSel.value || params.get('from') || params.get('to') || metas.length;
    if (!filtered) return recentLists();

    const results = h('section', { id: 'results' });
    app.appendChild(results);
    if (q && match === 'exact') {
      try {
        const view = await api('/api/v1/entity/' + encodeURIComponent(q));
        results.appendChild(h('h2', null, 'Exact match'));
        results.appendChild(entityTable([view.entity]));
      } catch (e) {
        results.appendChild(h('p', { class: 'muted' }, e.status === 404 ? 'No entity has exactly this ID.' : 'Search failed: ' + e.message));
      }
      return;
    }
    const apiParams = { q: q, instrument: params.get('instrument'), stage: params.get('stage'), status: params.get('status'), suspect: suspectSel.value, limit: 50 };
    const from = parseLocalTime(params.get('from'));
    const to = parseLocalTime(params.get('to'));
    if (from !== null) apiParams.from_ns = from;
    if (to !== null) apiParams.to_ns = to;
    for (const m of metas) { const i = m.indexOf('='); apiParams['meta.' + m.slice(0, i)] = m.slice(i + 1); }
    results.appendChild(h('h2', null, 'Matching entities'));
    const tbody = h('tbody');
    results.appendChild(h('table', { class: 'entities' },
      h('thead', null, h('tr', null, ['ID', 'instrument', 'stage', 'status', 'created'].map((c) => h('th', null, c)))), tbody));
    const more = h('button', { class: 'secondary', type: 'button' }, 'Load more');
    const count = h('p', { class: 'muted', id: 'result-count' });
    results.appendChild(count);
    results.appendChild(more);
    let cursor = null, total = 0;
    async function load() {
      more.disabled = true;
      try {
        const page = await api('/api/v1/entities', Object.assign({}, apiParams, { cursor: cursor }));
        page.entities.forEach((e) => tbody.appendChild(entityRow(e)));
        total += page.entities.length;
        cursor = page.next_cursor;
        count.textContent = total + (cursor ? '+ entities' : ' entities');
        more.hidden = !cursor;
        more.disabled = false;
      } catch (e) { results.appendChild(errorBox(e)); }
    }
    more.addEventListener('click', load);
    await load();
  }

  async function recentLists() {
    const grid = h('div', { class: 'grid2' });
    const left = h('section', { class: 'card', id: 'recent-entities' }, h('h2', null, 'Recent entities'));
    const right = h('section', { class: 'card', id: 'recent-errors' }, h('h2', null, 'Recent errors'));
    append(grid, [left, right]);
    app.appendChild(grid);
    const [entities, errors] = await Promise.all([
      api('/api/v1/entities', { limit: 25 }).catch((e) => e),
      api('/api/v1/events', { name: ERROR_EVENT, limit: 25 }).catch((e) => e),
    ]);
    if (entities instanceof Error) left.appendChild(errorBox(entities));
    else if (!entities.entities.length) left.appendChild(h('p', { class: 'muted' }, 'No entities yet. Run `herald demo` or point a pipeline at this herald.'));
    else left.appendChild(entityTable(entities.entities));
    if (errors instanceof Error) right.appendChild(errorBox(errors));
    else if (!errors.events.length) right.appendChild(h('p', { class: 'muted' }, 'No errors recorded.'));
    else right.appendChild(h('table', { class: 'recent-errors' },
      h('thead', null, h('tr', null, ['entity', 'message', 'stage', 'when'].map((c) => h('th', null, c)))),
      h('tbody', null, errors.events.map((e) => h('tr', null,
        h('td', null, entityLink(e.entity_id)), h('td', null, (e.metadata || {}).message || ''),
        h('td', null, (e.metadata || {}).stage || ''), h('td', null, fmtTime(e.timestamp_ns)))))));
  }

  // ---- 2. entity page ----------------------------------------------------------------------

  async function entityPage(id, params) {
    document.title = id + ' · Entity Inspector';
    let view;
    try { view = await api('/api/v1/entity/' + encodeURIComponent(id), null, { exactNs: true }); } catch (e) {
      app.appendChild(h('h1', { class: 'id', id: 'entity-id' }, id));
      app.appendChild(e.status === 404 ? h('p', { class: 'muted' }, 'No such entity (yet).') : errorBox(e));
      return;
    }
    const e = view.entity;
    app.appendChild(h('h1', { class: 'id', id: 'entity-id' }, e.id));
    if (e.suspect) app.appendChild(suspectBanner(e));
    const ident = h('dl', { class: 'identity', id: 'identity' });
    const row = (k, v) => append(ident, [h('dt', null, k), h('dd', null, v)]);
    row('instrument', h('a', { href: '/instrument/' + encodeURIComponent(e.instrument_id) }, e.instrument_id));
    row('stage', e.stage || '–');
    row('status', statusBadge(e.status));
    row('created', fmtTime(e.timestamp_ns));
    row('ended', e.end_ns ? fmtTime(e.end_ns) + ' (' + fmtDur(nsSince(e.end_ns, e.timestamp_ns)) + ')' : '–');
    row('service', e.service_name || '–');
    row('process', e.process_name || '–');
    row('placeholder', e.placeholder ? 'yes (no creation span received yet)' : 'no');
    row('parents', String((e.parent_ids || []).length));
    row('children', String(e.children_count));
    row('trace', e.trace_id ? traceLink(e.trace_id, e.span_id, e.trace_id) : '–');
    row('ingested', e.created_at || '–');
    const links = grafanaLinks(e, view.operations || []);
    const grid = h('div', { class: 'grid2' },
      h('section', { class: 'card' }, h('h2', null, 'Identity'), ident, links),
      h('section', { class: 'card' }, h('h2', null, 'Metadata'), metadataTable(e.metadata)));
    app.appendChild(grid);
    app.appendChild(flagsCard(e));
    const graphSection = h('section', { class: 'card', id: 'provenance' }, h('h2', null, 'Provenance'));
    app.appendChild(graphSection);
    app.appendChild(blastRadius(e));
    const opsSection = h('section', { class: 'card', id: 'operations' });
    app.appendChild(opsSection);
    const evSection = h('section', { class: 'card', id: 'events' });
    app.appendChild(evSection);
    const logSection = h('section', { class: 'card', id: 'logs' }, h('h2', null, 'Logs'),
      h('p', { class: 'muted' }, 'Lines naming this entity and every line of its creation\u2019s and operations\u2019 traces (so lines logged before set_entity_id() are here too).'));
    app.appendChild(logSection);
    renderOperations(opsSection, e, view.operations || [], view.operations_next_cursor, view.events || []);
    renderEvents(evSection, view.events || [], view.events_next_cursor);
    const logs = logPanel({ entity_id: e.id }, { showTrace: true, empty: 'No log lines for this entity.' });
    logs.el.id = 'entity-logs';
    logSection.appendChild(logs.el);
    await Promise.all([provenance(graphSection, e, params), logs.load()]);
  }

  // ---- flags, suspicion and blast radius (docs/inspector.md "Flags") ------------------------

  // A JSON request that changes something (same-origin, so the sign-in cookie may carry it).
  async function send(method, path, body) {
    const init = { method: method, headers: { accept: 'application/json' } };
    if (body !== undefined) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
    const res = await fetch(path, init);
    let answer = null;
    try { answer = await res.json(); } catch (err) { answer = null; }
    if (!res.ok) {
      const err = new Error((answer && answer.error) || ('HTTP ' + res.status));
      err.status = res.status;
      throw err;
    }
    return answer;
  }

  function fmtDate(rfc3339) { return rfc3339 ? String(rfc3339).replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC') : '–'; }

  // "Derived from X, flagged bad by Y on D: reason", with the path from X down to this entity.
  function suspectBanner(e) {
    const reasons = e.suspect_because || [];
    const banner = h('section', { class: 'suspect-banner', id: 'suspect-banner', role: 'alert' });
    const bad = reasons.some((r) => r.severity === 'bad');
    banner.appendChild(h('h2', null, bad ? 'Bad data upstream' : 'Suspect data upstream'));
    const list = h('ul', { class: 'suspect-reasons' });
    for (const r of reasons) {
      const own = r.entity_id === e.id;
      const line = h('li', { class: 'suspect-reason' });
      append(line, [
        own ? 'This entity was ' : ['Derived from ', entityLink(r.entity_id), ', '],
        'flagged ', h('strong', null, r.severity), ' by ', h('span', { class: 'who' }, r.flagged_by),
        ' on ', fmtDate(r.created_at), ': ', h('q', { class: 'reason' }, r.reason),
      ]);
      if (!own && r.path && r.path.length > 1) {
        const path = h('div', { class: 'suspect-path' }, 'path: ');
        r.path.forEach((id, i) => {
          append(path, [i ? ' → ' : null, id === e.id ? h('span', { class: 'id' }, 'this entity') : entityLink(id)]);
        });
        line.appendChild(path);
      }
      list.appendChild(line);
    }
    banner.appendChild(list);
    if (e.suspicion_partial) banner.appendChild(h('p', { class: 'muted' }, 'This entity has more ancestors than one check reads; flags on the farthest ones are not shown.'));
    return banner;
  }

  // The flags raised on this entity (with their history) and the "Flag as bad" action.
  function flagsCard(e) {
    const card = h('section', { class: 'card', id: 'flags' }, h('h2', null, 'Flags'));
    const flags = e.flags || [];
    if (flags.length) {
      card.appendChild(h('table', { class: 'flags' },
        h('thead', null, h('tr', null, ['severity', 'reason', 'flagged by', 'raised', 'cleared', ''].map((c) => h('th', null, c)))),
        h('tbody', null, flags.map((f) => h('tr', { class: f.cleared_at ? 'cleared' : 'active' },
          h('td', null, f.severity), h('td', { class: 'reason' }, f.reason), h('td', null, f.flagged_by),
          h('td', null, fmtDate(f.created_at)),
          h('td', null, f.cleared_at ? fmtDate(f.cleared_at) + ' by ' + (f.cleared_by || '?') : '–'),
          h('td', null, f.cleared_at ? null : h('button', {
            type: 'button', class: 'secondary clear-flag',
            onclick: async (ev) => {
              ev.target.disabled = true;
              try {
                await send('DELETE', '/api/v1/entity/' + encodeURIComponent(e.id) + '/flags/' + encodeURIComponent(f.flag_id));
                route();
              } catch (err) { ev.target.disabled = false; card.appendChild(errorBox(err)); }
            },
          }, 'Clear')))))));
    } else {
      card.appendChild(h('p', { class: 'muted' }, 'No flags on this entity.'));
    }
    const reason = h('input', { name: 'reason', size: 40, required: 'required', maxlength: 4096, id: 'flag-reason', placeholder: 'what is wrong with it' });
    const who = h('input', { name: 'flagged_by', size: 16, required: 'required', maxlength: 256, id: 'flag-by', placeholder: 'your name' });
    const severity = h('select', { name: 'severity', id: 'flag-severity' }, h('option', { value: 'bad' }, 'bad'), h('option', { value: 'suspect' }, 'suspect'));
    const status = h('span', { class: 'muted', id: 'flag-status' });
    const form = h('form', { class: 'filters flag-form', id: 'flag-form', hidden: 'hidden' },
      h('label', null, 'reason', reason), h('label', null, 'flagged by', who), h('label', null, 'severity', severity),
      h('button', { type: 'submit', id: 'flag-submit' }, 'Flag'), status);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      status.textContent = 'flagging…';
      try {
        await send('POST', '/api/v1/entity/' + encodeURIComponent(e.id) + '/flags', { reason: reason.value, flagged_by: who.value, severity: severity.value });
        route();
      } catch (err) { status.textContent = 'Not flagged: ' + err.message; }
    });
    const open = h('button', { type: 'button', class: 'danger', id: 'flag-as-bad', onclick: () => { form.hidden = false; open.hidden = true; reason.focus(); } }, 'Flag as bad');
    append(card, [open, form]);
    return card;
  }

  // What was derived from this entity: counts per stage, instrument and status, the list, CSV.
  function blastRadius(e) {
    const path = '/api/v1/entity/' + encodeURIComponent(e.id) + '/impact';
    const card = h('section', { class: 'card', id: 'blast-radius' }, h('h2', null, 'Blast radius'));
    const body = h('div', { id: 'blast-body' });
    const show = h('button', { type: 'button', class: 'secondary', id: 'show-blast-radius' }, 'Show everything derived from this entity');
    const csv = h('a', { href: path + '?format=csv', download: 'blast-radius.csv', id: 'blast-csv' }, 'Download CSV');
    append(card, [h('div', { class: 'graph-tools' }, show, csv), body]);
    show.addEventListener('click', async () => {
      show.disabled = true;
      clear(body).appendChild(h('p', { class: 'muted' }, 'walking the descendants…'));
      try {
        const first = await api(path, { limit: 100 });
        clear(body);
        const counts = (title, map, id) => h('div', { class: 'blast-counts' }, h('h3', null, title),
          h('table', { id: id }, h('tbody', null, Object.keys(map).sort().map((k) => h('tr', null, h('td', null, k || '(none)'), h('td', { class: 'num' }, String(map[k])))))));
        append(body, [
          h('p', { id: 'blast-total' }, String(first.total) + ' descendant' + (first.total === 1 ? '' : 's'),
            first.total ? ', created ' + fmtTime(first.oldest_ns) + ' – ' + fmtTime(first.newest_ns) : ''),
          first.total ? h('div', { class: 'grid3' },
            counts('per stage', first.by_stage, 'blast-by-stage'),
            counts('per instrument', first.by_instrument, 'blast-by-instrument'),
            counts('per status', first.by_status, 'blast-by-status')) : null,
        ]);
        if (!first.total) return;
        const rows = h('tbody');
        const table = h('table', { class: 'entities', id: 'blast-list' },
          h('thead', null, h('tr', null, ['ID', 'depth', 'instrument', 'stage', 'status', 'created'].map((c) => h('th', null, c)))), rows);
        const addRows = (nodes) => { for (const n of nodes) rows.appendChild(h('tr', null, h('td', null, entityLink(n.id)), h('td', { class: 'num' }, String(n.depth)), h('td', null, n.instrument_id), h('td', null, n.stage || '–'), h('td', null, statusBadge(n.status)), h('td', null, fmtTime(n.timestamp_ns)))); };
        addRows(first.entities);
        body.appendChild(table);
        let cursor = first.next_cursor;
        if (cursor) {
          const more = h('button', { type: 'button', class: 'secondary', id: 'blast-more' }, 'more');
          more.addEventListener('click', async () => {
            more.disabled = true;
            const next = await api(path, { limit: 100, cursor: cursor });
            addRows(next.entities);
            cursor = next.next_cursor;
            if (cursor) more.disabled = false; else more.remove();
          });
          body.appendChild(more);
        }
      } catch (err) { clear(body).appendChild(errorBox(err)); show.disabled = false; }
    });
    return card;
  }

  function grafanaLinks(e, operations) {
    if (!SETTINGS.grafana_url) return null;
    const traces = [];
    if (e.trace_id) traces.push(['creation', e.trace_id]);
    for (const op of operations) if (op.trace_id && !traces.some((t) => t[1] === op.trace_id)) traces.push([op.operation, op.trace_id]);
    if (!traces.length) return null;
    return h('div', { id: 'grafana-links' }, h('h2', null, 'Traces in Grafana'),
      h('ul', null, traces.slice(0, 20).map(([what, trace]) => h('li', null, h('a', { href: tempoHref(trace), target: '_blank', rel: 'noopener noreferrer' }, what + ' · ' + trace)))));
  }

  // Grafana Explore on the Tempo data source: the trace when given, else an empty TraceQL
  // query. Null without a Grafana URL in the settings.
  function tempoHref(traceId) {
    if (!SETTINGS.grafana_url) return null;
    const base = SETTINGS.grafana_url.replace(/\/+$/, '');
    const ds = SETTINGS.tempo_datasource || 'tempo';
    const pane = { datasource: ds, queries: [{ refId: 'A', datasource: { type: 'tempo', uid: ds }, queryType: 'traceql', query: traceId || '' }], range: { from: 'now-30d', to: 'now' } };
    return base + '/explore?schemaVersion=1&panes=' + encodeURIComponent(JSON.stringify({ a: pane }));
  }

  // Provenance DAG: ancestors to the left, descendants to the right, layered by depth.
  const LAYER_SHOWN = 30;
  const NODE_W = 190, NODE_H = 24, COL_W = 250, ROW_H = 32;

  async function provenance(section, entity, params) {
    const state = {
      up: Math.max(1, Number(params.get('up')) || 3),
      down: Math.max(1, Number(params.get('down')) || 2),
      shown: {},
      nodes: new Map(), edges: [], partial: false, anc: null, desc: null,
    };
    const tools = h('div', { class: 'graph-tools' });
    const info = h('span', { class: 'muted', id: 'graph-info' });
    const moreUp = h('button', { type: 'button', class: 'secondary', id: 'more-ancestors' }, '◀ more ancestor levels');
    const moreDown = h('button', { type: 'button', class: 'secondary', id: 'more-descendants' }, 'more descendant levels ▶');
    const zoomIn = h('button', { type: 'button', class: 'secondary', title: 'zoom in' }, '+');
    const zoomOut = h('button', { type: 'button', class: 'secondary', title: 'zoom out' }, '−');
    const fit = h('button', { type: 'button', class: 'secondary', title: 'fit' }, 'fit');
    append(tools, [moreUp, moreDown, zoomIn, zoomOut, fit, info]);
    const svg = s('svg', { id: 'graph', role: 'img', 'aria-label': 'provenance graph' });
    const view = s('g', { class: 'viewport' });
    svg.appendChild(view);
    section.appendChild(tools);
    section.appendChild(h('div', { class: 'graph-wrap' }, svg));
    section.appendChild(h('p', { class: 'legend' }, 'Ancestors left, descendants right; the inspected entity is highlighted, red outlines and ! mark errors, dashed boxes are placeholders or collapsed groups (click to show more). Drag to pan, wheel to zoom, click a node to open it.'));
    const zoom = panZoom(svg, view);
    zoomIn.addEventListener('click', () => zoom.scaleBy(1.25));
    zoomOut.addEventListener('click', () => zoom.scaleBy(0.8));
    fit.addEventListener('click', () => zoom.fit());

    async function load() {
      moreUp.disabled = moreDown.disabled = true;
      info.textContent = 'loading…';
      const id = encodeURIComponent(entity.id);
      const [anc, desc] = await Promise.all([
        api('/api/v1/entity/' + id + '/lineage', { direction: 'ancestors', depth: state.up, limit: 5000 }),
        api('/api/v1/entity/' + id + '/lineage', { direction: 'descendants', depth: state.down, limit: 5000 }),
      ]);
      state.nodes = new Map();
      for (const n of anc.nodes) state.nodes.set(n.id, Object.assign({}, n, { layer: -n.depth }));
      for (const n of desc.nodes) if (!state.nodes.has(n.id)) state.nodes.set(n.id, Object.assign({}, n, { layer: n.depth }));
      const seen = new Set();
      state.edges = [];
      for (const e of anc.edges.concat(desc.edges)) {
        const k = e.source + '\u0000' + e.target;
        if (!seen.has(k)) { seen.add(k); state.edges.push(e); }
      }
      state.partial = anc.partial || desc.partial;
      state.foundUp = Math.max(0, ...anc.nodes.map((n) => n.depth));
      state.foundDown = Math.max(0, ...desc.nodes.map((n) => n.depth));
      moreUp.disabled = state.foundUp < state.up && !anc.partial;
      moreDown.disabled = state.foundDown < state.down && !desc.partial;
      draw();
      zoom.fit();
    }

    function draw() {
      clear(view);
      const layers = new Map();
      for (const n of state.nodes.values()) {
        if (!layers.has(n.layer)) layers.set(n.layer, []);
        layers.get(n.layer).push(n);
      }
      const pos = new Map();       // node id -> {x, y}
      const proxy = new Map();     // hidden node id -> collapsed group key
      const groups = [];
      const order = [...layers.keys()].sort((a, b) => a - b);
      const minLayer = order.length ? order[0] : 0;
      let visible = 0;
      for (const layer of order) {
        const nodes = layers.get(layer).sort((a, b) => (b.status === 'error') - (a.status === 'error') || a.timestamp_ns - b.timestamp_ns || (a.id < b.id ? -1 : 1));
        const limit = state.shown[layer] || LAYER_SHOWN;
        const shown = nodes.length > limit ? nodes.slice(0, limit - 1) : nodes;
        const hidden = nodes.length - shown.length;
        const rows = shown.length + (hidden ? 1 : 0);
        const x = (layer - minLayer) * COL_W;
        const y0 = -(rows * ROW_H) / 2;
        shown.forEach((n, i) => pos.set(n.id, { x: x, y: y0 + i * ROW_H, node: n }));
        visible += shown.length;
        if (hidden) {
          const key = 'layer:' + layer;
          const g = { key: key, layer: layer, count: hidden, x: x, y: y0 + shown.length * ROW_H, errors: 0 };
          for (const n of nodes.slice(shown.length)) { proxy.set(n.id, key); if (n.status === 'error') g.errors++; }
          groups.push(g);
          pos.set(key, { x: g.x, y: g.y });
        }
      }
      const edgeLayer = s('g', { class: 'edges' });
      view.appendChild(edgeLayer);
      const drawn = new Set();
      let edgeCount = 0;
      for (const e of state.edges) {
        const a = pos.has(e.source) ? e.source : proxy.get(e.source);
        const b = pos.has(e.target) ? e.target : proxy.get(e.target);
        if (!a || !b || a === b) continue;
        const k = a + '\u0000' + b;
        if (drawn.has(k)) continue;
        drawn.add(k);
        const p = pos.get(a), q = pos.get(b);
        const x1 = p.x + NODE_W, y1 = p.y + NODE_H / 2, x2 = q.x, y2 = q.y + NODE_H / 2;
        const mx = (x1 + x2) / 2;
        edgeLayer.appendChild(s('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
        edgeCount++;
      }
      for (const [id, p] of pos) {
        if (!p.node) continue;
        const n = p.node;
        const cls = ['node', n.depth === 0 ? 'root' : '', n.status === 'error' ? 'error' : '', n.placeholder ? 'placeholder' : ''].join(' ').trim();
        const g = s('g', { class: cls, transform: `translate(${p.x},${p.y})`, 'data-id': id, 'data-layer': n.layer, tabindex: 0 },
          s('title', null, id + '\n' + (n.stage || '') + ' · ' + n.status + ' · ' + fmtTime(n.timestamp_ns)),
          s('rect', { width: NODE_W, height: NODE_H, rx: 4 }),
          n.status === 'error' ? s('text', { class: 'mark', x: 5, y: 16 }, '!') : null,
          s('text', { x: n.status === 'error' ? 14 : 6, y: 16 }, shortId(id, 27)));
        g.addEventListener('click', () => { if (!zoom.dragged()) location.href = entityHref(id); });
        g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') location.href = entityHref(id); });
        view.appendChild(g);
      }
      for (const grp of groups) {
        const g = s('g', { class: 'node collapsed', transform: `translate(${grp.x},${grp.y})`, 'data-collapsed': grp.count, 'data-layer': grp.layer },
          s('title', null, grp.count + ' more at this level; click to show more'),
          s('rect', { width: NODE_W, height: NODE_H, rx: 4 }),
          s('text', { x: 6, y: 16 }, '+' + grp.count + ' more' + (grp.errors ? ' (' + grp.errors + ' with errors)' : '')));
        g.addEventListener('click', () => {
          if (zoom.dragged()) return;
          state.shown[grp.layer] = (state.shown[grp.layer] || LAYER_SHOWN) + 100;
          draw();
        });
        view.appendChild(g);
      }
      const ancestors = [...state.nodes.values()].filter((n) => n.layer < 0).length;
      const descendants = [...state.nodes.values()].filter((n) => n.layer > 0).length;
      info.textContent = levelsFound('ancestor', ancestors, state.foundUp, state.up) + '; ' +
        levelsFound('descendant', descendants, state.foundDown, state.down) +
        `; ${visible} shown, ${edgeCount} edges` + (state.partial ? '; cut at the node budget' : '');
      svg.dataset.nodes = String(state.nodes.size);
      svg.dataset.visible = String(visible);
    }

    moreUp.addEventListener('click', () => { state.up += 2; load().catch((e) => section.appendChild(errorBox(e))); });
    moreDown.addEventListener('click', () => { state.down += 2; load().catch((e) => section.appendChild(errorBox(e))); });
    await load();
  }

  // What a walk found and how far it looked: "6 ancestors found over 2 levels (3 levels
  // searched)", "0 descendants found within 2 levels".
  function levelsFound(noun, count, found, searched) {
    const levels = (n) => n + (n === 1 ? ' level' : ' levels');
    const what = count + ' ' + noun + (count === 1 ? '' : 's');
    return count ? `${what} found over ${levels(found)} (${levels(searched)} searched)` : `${what} found within ${levels(searched)}`;
  }

  // Wheel zoom around the cursor, drag to pan; `dragged()` tells a click from the end of a drag.
  function panZoom(svg, view) {
    let k = 1, tx = 0, ty = 0, drag = null, moved = false;
    const apply = () => view.setAttribute('transform', `translate(${tx},${ty}) scale(${k})`);
    svg.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      const r = svg.getBoundingClientRect();
      const px = ev.clientX - r.left, py = ev.clientY - r.top;
      const f = ev.deltaY < 0 ? 1.15 : 1 / 1.15;
      const nk = Math.min(4, Math.max(0.05, k * f));
      tx = px - (px - tx) * (nk / k); ty = py - (py - ty) * (nk / k); k = nk;
      apply();
    }, { passive: false });
    svg.addEventListener('mousedown', (ev) => { drag = { x: ev.clientX, y: ev.clientY, tx: tx, ty: ty }; moved = false; });
    window.addEventListener('mousemove', (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) { moved = true; svg.classList.add('dragging'); }
      tx = drag.tx + dx; ty = drag.ty + dy; apply();
    });
    window.addEventListener('mouseup', () => { drag = null; svg.classList.remove('dragging'); setTimeout(() => { moved = false; }, 0); });
    return {
      scaleBy(f) {
        const r = svg.getBoundingClientRect();
        const px = r.width / 2, py = r.height / 2;
        const nk = Math.min(4, Math.max(0.05, k * f));
        tx = px - (px - tx) * (nk / k); ty = py - (py - ty) * (nk / k); k = nk; apply();
      },
      fit() {
        const r = svg.getBoundingClientRect();
        view.setAttribute('transform', '');
        const b = view.getBBox();
        if (!b.width || !r.width) { tx = r.width / 2; ty = r.height / 2; k = 1; apply(); return; }
        k = Math.min(1.2, Math.max(0.05, Math.min((r.width - 40) / b.width, (r.height - 40) / b.height)));
        tx = (r.width - b.width * k) / 2 - b.x * k;
        ty = (r.height - b.height * k) / 2 - b.y * k;
        apply();
      },
      dragged() { return moved; },
    };
  }

  // Operation timeline: the creation and each operation as a bar on one time axis. Positions
  // are offsets from the earliest start, computed exactly (`nsSince`); when everything happened
  // in one instant the bars sit at the start of the axis, each at least 2 units wide.
  function renderOperations(section, e, operations, nextCursor, events) {
    const failedSpans = new Set(events.filter((ev) => ev.event_name === ERROR_EVENT).map((ev) => ev.span_id));
    const rows = [];
    if (!e.placeholder) {
      rows.push({ name: 'creation' + (e.stage ? ' (' + e.stage + ')' : ''), at: e.timestamp_ns, dur: e.end_ns ? Math.max(0, nsSince(e.end_ns, e.timestamp_ns)) : 0, failed: failedSpans.has(e.span_id), creation: true, trace: e.trace_id, span: e.span_id });
    }
    for (const op of operations) rows.push({ name: op.operation, at: op.timestamp_ns, dur: Math.max(0, Number(op.duration_ns)), failed: op.status === 'error' || failedSpans.has(op.span_id), creation: false, trace: op.trace_id, span: op.span_id });
    const failed = rows.filter((r) => r.failed).length;
    section.appendChild(h('h2', null, 'Operation timeline'));
    section.appendChild(h('p', { class: 'muted', id: 'operations-count', 'data-operations': operations.length, 'data-failed': failed },
      (e.placeholder ? 'no creation span yet, ' : '1 creation, ') + operations.length + ' operation' + (operations.length === 1 ? '' : 's') + (failed ? ', ' + failed + ' failed' : '') + (nextCursor ? ' (first ' + operations.length + ' shown)' : '')));
    if (!rows.length) return;
    const t0 = earliest(rows.map((r) => r.at));
    for (const r of rows) r.start = nsSince(r.at, t0);
    const span = Math.max(...rows.map((r) => r.start + r.dur));
    const W = 1000, LABEL = 200, RIGHT = 110, ROW = 22, TOP = 22;
    const x = (offset) => LABEL + (span > 0 ? offset / span : 0) * (W - LABEL - RIGHT);
    const svg = s('svg', { id: 'operation-timeline', viewBox: `0 0 ${W} ${TOP + rows.length * ROW + 6}`, width: '100%' });
    const axis = s('g', { class: 'axis' });
    const ticks = span > 0 ? 4 : 0;
    for (let i = 0; i <= ticks; i++) {
      const offset = ticks ? (i / ticks) * span : 0;
      axis.appendChild(s('line', { x1: x(offset), x2: x(offset), y1: 14, y2: TOP + rows.length * ROW }));
      axis.appendChild(s('text', { x: x(offset), y: 10, 'text-anchor': i === 4 ? 'end' : 'start' },
        i > 0 ? '+' + fmtDur(offset) : fmtTime(t0) + (ticks ? '' : ' · all in one instant')));
    }
    svg.appendChild(axis);
    rows.forEach((r, i) => {
      const y = TOP + i * ROW;
      const bx = x(r.start), bw = Math.max(2, x(r.start + r.dur) - bx);
      svg.appendChild(s('g', { class: 'op-row' + (r.failed ? ' failed' : ''), 'data-operation': r.name },
        s('title', null, r.name + ' · ' + fmtTime(r.at) + ' · ' + fmtDur(r.dur) + (r.failed ? ' · failed' : '')),
        s('text', { class: 'bar-label', x: 4, y: y + 14 }, (r.failed ? '✖ ' : '') + shortId(r.name, 28)),
        s('rect', { class: 'bar' + (r.failed ? ' error' : r.creation ? ' creation' : ''), x: bx, y: y + 3, width: bw, height: ROW - 8, rx: 2 }),
        s('text', { class: 'bar-label', x: Math.min(bx + bw + 4, W - RIGHT + 4), y: y + 14 }, fmtDur(r.dur))));
    });
    section.appendChild(svg);
    section.appendChild(operationTraces(e, rows));
  }

  // The timeline's rows once more, each with the trace it happened in, linked to the trace page
  // focused on the row's span.
  function operationTraces(e, rows) {
    return h('table', { class: 'op-traces', id: 'operation-traces' },
      h('thead', null, h('tr', null, ['row', 'started', 'duration', 'trace'].map((c) => h('th', null, c)))),
      h('tbody', null, rows.map((r) => h('tr', { class: 'op-trace' + (r.failed ? ' failed' : ''), 'data-operation': r.name, 'data-trace-id': r.trace || '' },
        h('td', null, (r.failed ? '✖ ' : '') + r.name),
        h('td', null, fmtTime(r.at)), h('td', null, fmtDur(r.dur)),
        h('td', null, r.trace
          ? entitySentence(r.trace, r.span, r.creation ? 'creation' : 'operation', e.id, r.creation ? null : r.name)
          : h('span', { class: 'muted' }, 'no trace recorded'))))));
  }

  // Events timeline: markers on an axis plus each event with its metadata. Offsets from the
  // first event are exact (`nsSince`); events that all share one instant sit mid-axis.
  function renderEvents(section, events, nextCursor) {
    const errors = events.filter((e) => e.event_name === ERROR_EVENT).length;
    section.appendChild(h('h2', null, 'Events'));
    section.appendChild(h('p', { class: 'muted', id: 'events-count', 'data-events': events.length, 'data-errors': errors },
      events.length + ' event' + (events.length === 1 ? '' : 's') + ', ' + errors + ' error' + (errors === 1 ? '' : 's') + (nextCursor ? ' (first ' + events.length + ' shown)' : '')));
    if (!events.length) return;
    const t0 = earliest(events.map((e) => e.timestamp_ns));
    const offsets = events.map((e) => nsSince(e.timestamp_ns, t0));
    const span = Math.max(...offsets);
    const W = 1000, PAD = 20;
    const x = (offset) => (span > 0 ? PAD + (offset / span) * (W - 2 * PAD) : W / 2);
    const svg = s('svg', { id: 'event-timeline', viewBox: `0 0 ${W} 44`, width: '100%' },
      s('g', { class: 'axis' }, s('line', { x1: PAD, x2: W - PAD, y1: 22, y2: 22 }),
        span > 0
          ? [s('text', { x: PAD, y: 42 }, fmtTime(t0)), s('text', { x: W - PAD, y: 42, 'text-anchor': 'end' }, '+' + fmtDur(span))]
          : s('text', { x: W / 2, y: 42, 'text-anchor': 'middle' }, fmtTime(t0) + (events.length > 1 ? ' · all in one instant' : ''))));
    events.forEach((e, i) => {
      svg.appendChild(s('circle', { class: 'event-mark' + (e.event_name === ERROR_EVENT ? ' error' : ''), cx: x(offsets[i]), cy: 22, r: 6 },
        s('title', null, e.event_name + ' · ' + fmtTime(e.timestamp_ns) + ((e.metadata || {}).message ? ' · ' + e.metadata.message : ''))));
    });
    section.appendChild(svg);
    section.appendChild(h('table', { class: 'events-table' },
      h('thead', null, h('tr', null, ['time', 'event', 'metadata'].map((c) => h('th', null, c)))),
      h('tbody', null, events.map((e) => h('tr', { class: e.event_name === ERROR_EVENT ? 'event error' : 'event' },
        h('td', null, fmtTime(e.timestamp_ns)),
        h('td', null, h('span', { class: 'badge' + (e.event_name === ERROR_EVENT ? ' error' : '') }, e.event_name)),
        h('td', null, Object.keys(e.metadata || {}).sort().map((k) => h('div', null, h('span', { class: 'muted' }, k + ': '), e.metadata[k]))))))));
  }

  // ---- 3. errors ---------------------------------------------------------------------------

  async function errorsPage(params) {
    document.title = 'Errors · Entity Inspector';
    const instruments = await instrumentsList();
    const instrument = params.get('instrument') || instruments[0] || '';
    const win = WINDOWS[params.get('window')] ? params.get('window') : '24h';
    app.appendChild(h('h1', null, 'Errors by class'));
    app.appendChild(h('form', { class: 'filters card', method: 'get', action: '/errors' },
      h('label', null, 'instrument', instrumentSelect('instrument', instruments, instrument, false)),
      h('label', null, 'window', windowSelect(win)),
      h('label', null, 'error stage', h('input', { name: 'stage', value: params.get('stage') || '', size: 12 })),
      h('button', { type: 'submit' }, 'Show')));
    if (!instrument) { app.appendChild(h('p', { class: 'muted' }, 'No instrument has sent data yet.')); return; }
    const to = nowNs();
    const data = await api('/api/v1/errors', { instrument: instrument, stage: params.get('stage'), from_ns: Math.floor(to - WINDOWS[win]), to_ns: Math.floor(to) + 1, limit: 200 });
    app.appendChild(h('p', { class: 'muted', id: 'errors-summary', 'data-groups': data.groups.length },
      data.errors_scanned + ' errors in ' + data.groups.length + ' classes between ' + fmtTime(data.from_ns) + ' and ' + fmtTime(data.to_ns) + (data.partial ? ' (newest 100 000 errors only)' : '')));
    if (!data.groups.length) return;
    app.appendChild(h('table', { class: 'error-groups', id: 'error-groups' },
      h('thead', null, h('tr', null, h('th', null, 'stage'), h('th', null, 'error class'), h('th', { class: 'num' }, 'occurrences'), h('th', { class: 'num' }, 'entities'), h('th', null, 'first seen'), h('th', null, 'last seen'), h('th', null, 'examples'), h('th', null, 'likely causes upstream'))),
      h('tbody', null, data.groups.map((g, i) => h('tr', { class: 'error-group', 'data-occurrences': g.occurrences },
        h('td', null, g.stage ? h('a', { href: '/errors' + query({ instrument: instrument, window: win, stage: g.stage }) }, g.stage) : '–'),
        h('td', null, h('div', { class: 'error-class' }, g.message || '(no message)'), g.sample_message !== g.message ? h('div', { class: 'muted' }, 'e.g. ', g.sample_message) : null),
        h('td', { class: 'num' }, String(g.occurrences)), h('td', { class: 'num' }, String(g.entities_affected)),
        h('td', null, fmtTime(g.first_seen_ns)), h('td', null, fmtTime(g.last_seen_ns)),
        h('td', null, g.example_entities.map((id) => h('div', null, entityLink(id, shortId(id, 40))))),
        // Hints for the ten most frequent classes: each is a comparison of its own.
        i < 10 ? causesCell(g.class, instrument, data.from_ns, data.to_ns) : h('td', null, '–'))))));
  }

  // The top root-cause hints of an error class (GET /api/v1/errors/{class}/causes), loaded
  // after the table is drawn.
  function causesCell(cls, instrument, fromNs, toNs) {
    const cell = h('td', { class: 'causes' }, h('span', { class: 'muted' }, 'looking upstream…'));
    api('/api/v1/errors/' + encodeURIComponent(cls) + '/causes', { instrument: instrument, from_ns: fromNs, to_ns: toNs, limit: 3 }).then((r) => {
      clear(cell);
      if (!r.causes.length) { cell.appendChild(h('span', { class: 'muted' }, 'nothing shared stands out')); return; }
      for (const c of r.causes) {
        const what = c.kind === 'entity' ? h('a', { href: entityHref(c.value), class: 'id cause-link' }, shortId(c.value, 32)) : h('span', { class: 'id' }, c.value);
        cell.appendChild(h('div', { class: 'cause', 'data-kind': c.kind }, c.kind + ' ', what, ' ',
          h('span', { class: 'muted' }, Math.round(100 * c.failing_share) + '% of failing vs ' + Math.round(100 * c.baseline_share) + '% of ok')));
      }
    }, (err) => { clear(cell).appendChild(h('span', { class: 'muted' }, 'no hints: ' + err.message)); });
    return cell;
  }

  // ---- notifications -----------------------------------------------------------------------

  async function sendJson(method, path, body) {
    const res = await fetch(path, {
      method: method,
      headers: { accept: 'application/json', 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401 && SETTINGS.auth) {
      location.assign('/sign-in?next=' + encodeURIComponent(location.pathname + location.search));
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) throw new Error((data && data.error) || ('HTTP ' + res.status));
    return data;
  }

  function isoTime(iso) { return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–'; }

  function silenceScope(s) {
    if (!s.event_type) return 'whole instrument';
    return s.fingerprint ? s.event_type + ' · ' + s.fingerprint : s.event_type;
  }

  async function notificationsPage(params) {
    document.title = 'Notifications · Entity Inspector';
    const instruments = await instrumentsList();
    const instrument = params.get('instrument_id') || instruments[0] || '';
    const fingerprint = params.get('fingerprint') || '';
    app.appendChild(h('h1', null, 'Notifications'));
    app.appendChild(h('form', { class: 'filters card', method: 'get', action: '/notifications' },
      h('label', null, 'instrument', instrumentSelect('instrument_id', instruments.includes(instrument) || !instrument ? instruments : [instrument].concat(instruments), instrument, false)),
      h('button', { type: 'submit' }, 'Show')));
    if (!instrument) { app.appendChild(h('p', { class: 'muted' }, 'No instrument has sent data yet.')); return; }

    const message = h('p', { class: 'muted', id: 'silence-message', role: 'status' });
    const form = h('form', { class: 'filters card silence-form', id: 'silence-form' },
      h('h2', null, 'New silence'),
      h('label', null, 'instrument', h('input', { name: 'instrument_id', value: instrument, required: 'required', size: 14 })),
      h('label', null, 'event type', h('input', { name: 'event_type', value: params.get('event_type') || (fingerprint ? ERROR_EVENT : ''), placeholder: 'every event', size: 14 })),
      h('label', null, 'fingerprint', h('input', { name: 'fingerprint', value: fingerprint, placeholder: 'every class', size: 18 })),
      h('label', null, 'minutes', h('input', { name: 'duration_minutes', value: '60', type: 'number', min: '1', size: 6, required: 'required' })),
      h('label', null, 'by', h('input', { name: 'silenced_by', value: '', required: 'required', size: 10 })),
      h('label', null, 'reason', h('input', { name: 'reason', value: '', size: 24 })),
      h('button', { type: 'submit' }, 'Silence'),
      message);
    app.appendChild(form);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      const body = { instrument_id: f.get('instrument_id'), duration_minutes: Number(f.get('duration_minutes')), silenced_by: f.get('silenced_by') };
      for (const k of ['event_type', 'fingerprint', 'reason']) if (String(f.get(k) || '').trim()) body[k] = String(f.get(k)).trim();
      try {
        const s = await sendJson('POST', '/api/v1/notifications/silence', body);
        message.textContent = 'Silence ' + s.id + ' created, until ' + isoTime(s.expires_at) + '.';
        await loadSilences();
      } catch (err) { message.textContent = 'Not created: ' + err.message; }
    });

    const silences = h('section', { class: 'card', id: 'silences' }, h('h2', null, 'Silences'));
    const alerts = h('section', { class: 'card', id: 'alerts' }, h('h2', null, 'Active alerts (last 7 days)'));
    const log = h('section', { class: 'card', id: 'deliveries' }, h('h2', null, 'Recent deliveries'));
    app.appendChild(silences);
    app.appendChild(alerts);
    app.appendChild(log);

    async function act(method, path) {
      try { await sendJson(method, path); } catch (err) { message.textContent = err.message; }
      await loadSilences();
    }

    async function loadSilences() {
      clear(silences).appendChild(h('h2', null, 'Silences'));
      let list;
      try { list = await api('/api/v1/notifications/silences', { instrument_id: instrument }); } catch (err) { silences.appendChild(errorBox(err)); return; }
      if (!list.length) { silences.appendChild(h('p', { class: 'muted' }, 'No silences.')); return; }
      silences.appendChild(h('table', { class: 'silences' },
        h('thead', null, h('tr', null, h('th', null, 'id'), h('th', null, 'scope'), h('th', null, 'by'), h('th', null, 'reason'), h('th', null, 'until'), h('th', null, 'issue'), h('th', null, ''))),
        h('tbody', null, list.map((s) => h('tr', { class: 'silence ' + (s.active ? 'active' : 'expired'), 'data-id': s.id },
          h('td', { class: 'num' }, String(s.id)), h('td', { class: 'id' }, silenceScope(s)), h('td', null, s.silenced_by), h('td', null, s.reason || ''),
          h('td', null, (s.active ? '' : 'expired ') + isoTime(s.expires_at)),
          h('td', null, s.github_issue_url ? h('a', { href: s.github_issue_url, rel: 'noopener noreferrer' }, 'issue') : ''),
          h('td', null,
            s.active ? h('button', { type: 'button', class: 'expire', onclick: () => act('POST', '/api/v1/notifications/silence/' + s.id + '/expire') }, 'Expire') : null,
            h('button', { type: 'button', class: 'delete', onclick: () => act('DELETE', '/api/v1/notifications/silence/' + s.id) }, 'Delete')))))));
    }

    async function loadAlerts() {
      let list;
      try { list = await api('/api/v1/notifications/alerts', { instrument_id: instrument }); } catch (err) { alerts.appendChild(errorBox(err)); return; }
      if (!list.length) { alerts.appendChild(h('p', { class: 'muted' }, 'No errors in the last 7 days.')); return; }
      alerts.appendChild(h('table', { class: 'alerts' },
        h('thead', null, h('tr', null, h('th', null, 'class'), h('th', null, 'fingerprint'), h('th', { class: 'num' }, 'occurrences'), h('th', null, 'first seen'), h('th', null, 'last seen'), h('th', null, 'issue'), h('th', null, 'entities'), h('th', null, ''))),
        h('tbody', null, list.map((a) => h('tr', { class: 'alert', 'data-fingerprint': a.fingerprint },
          h('td', null, a.group_key), h('td', { class: 'id' }, a.fingerprint), h('td', { class: 'num' }, String(a.occurrence_count)),
          h('td', null, isoTime(a.first_seen)), h('td', null, isoTime(a.last_seen)),
          h('td', null, a.github_issue_url ? h('a', { href: a.github_issue_url, rel: 'noopener noreferrer' }, 'issue') : '–'),
          h('td', null, a.entity_ids.slice(0, 3).map((id) => h('div', null, entityLink(id, shortId(id, 30))))),
          h('td', null, h('a', { class: 'silence-link', href: '/notifications' + query({ instrument_id: instrument, fingerprint: a.fingerprint }) }, 'silence…')))))));
    }

    async function loadLog() {
      let list;
      try { list = await api('/api/v1/notifications/deliveries', { instrument_id: instrument, limit: 50 }); } catch (err) { log.appendChild(errorBox(err)); return; }
      if (!list.length) { log.appendChild(h('p', { class: 'muted' }, 'Nothing delivered yet.')); return; }
      log.appendChild(h('table', { class: 'deliveries' },
        h('thead', null, h('tr', null, h('th', null, 'time'), h('th', null, 'event'), h('th', null, 'fingerprint'), h('th', null, 'channel'), h('th', null, 'outcome'), h('th', null, 'detail'))),
        h('tbody', null, list.map((d) => h('tr', { class: 'delivery ' + d.outcome },
          h('td', null, fmtTime(d.at_ns)), h('td', null, d.event_name), h('td', { class: 'id' }, d.fingerprint),
          h('td', null, d.channel), h('td', null, h('span', { class: 'badge ' + (d.outcome === 'failed' ? 'error' : 'ok') }, d.outcome)), h('td', null, d.detail))))));
    }

    await Promise.all([loadSilences(), loadAlerts(), loadLog()]);
  }

  // ---- 4. data monitor ---------------------------------------------------------------------

  const MONITOR_WINDOWS = ['15m', '1h', '6h', '24h'];
  const FIELD_NAME = /^[a-z0-9_.]+$/;
  // Entities the monitor looks at to choose its defaults (newest first).
  const DEFAULTS_SAMPLE = 200;

  // Numeric metadata keys among `entities` that the monitor can be asked about.
  function numericKeys(entities) {
    const keys = new Set();
    for (const e of entities) for (const [k, v] of Object.entries(e.metadata || {})) if (FIELD_NAME.test(k) && v !== '' && isFinite(Number(v))) keys.add(k);
    return [...keys].sort();
  }
  // The first of `fields` whose values differ among `entities`: a constant field (a beam number,
  // a version) would draw one flat row. The first field when none varies.
  function fieldWithSpread(fields, entities) {
    const spread = fields.find((f) => {
      const values = new Set(entities.map((e) => (e.metadata || {})[f]).filter((v) => v !== undefined && v !== '' && isFinite(Number(v))).map(Number));
      return values.size > 1;
    });
    return spread || fields[0] || '';
  }

  async function monitorPage(params) {
    document.title = 'Monitor · Entity Inspector';
    const instruments = await instrumentsList();
    const instrument = params.get('instrument') || instruments[0] || '';
    const [served, sample] = instrument ? await Promise.all([
      api('/api/v1/monitor/fields', { instrument: instrument }).catch(() => []),
      api('/api/v1/entities', { instrument: instrument, limit: DEFAULTS_SAMPLE }).then((p) => p.entities, () => []),
    ]) : [[], []];
    // The served fields are those of the last 24 h; older data still offers its own.
    const fields = served.length ? served : numericKeys(sample);
    const field = params.get('field') || fieldWithSpread(fields, sample);
    const fixedToParam = Number(params.get('to_ms')) || null;
    const chosen = MONITOR_WINDOWS.includes(params.get('window')) || fixedToParam
      ? { win: MONITOR_WINDOWS.includes(params.get('window')) ? params.get('window') : '1h', toNs: null }
      : defaultWindow(sample.length ? sample[0].timestamp_ns : null, MONITOR_WINDOWS, '1h');
    const win = chosen.win;
    const fieldSel = h('select', { name: 'field' }, fields.map((f) => h('option', { value: f }, f)));
    fieldSel.value = field;
    const weightSel = h('select', { name: 'weight' }, h('option', { value: '' }, 'none'), fields.map((f) => h('option', { value: f }, f)));
    weightSel.value = params.get('weight') || '';
    const winSel = h('select', { name: 'window' }, MONITOR_WINDOWS.map((w) => h('option', { value: w }, 'last ' + w)));
    winSel.value = win;
    app.appendChild(h('h1', null, 'Data monitor'));
    app.appendChild(h('form', { class: 'filters card', method: 'get', action: '/monitor' },
      h('label', null, 'instrument', instrumentSelect('instrument', instruments, instrument, false)),
      h('label', null, 'value field', fieldSel), h('label', null, 'weight', weightSel), h('label', null, 'window', winSel),
      h('button', { type: 'submit' }, 'Show')));
    if (!instrument || !field) { app.appendChild(h('p', { class: 'muted' }, 'No numeric metadata among the newest entities of this instrument.')); return; }
    const note = windowNote(chosen, '1h');
    if (note) app.appendChild(h('p', { class: 'muted', id: 'window-note' }, note));
    const status = h('p', { class: 'muted', id: 'monitor-status' });
    const plot = h('div', { class: 'heat card', id: 'heatmap' });
    const top = h('section', { class: 'card', id: 'monitor-top' });
    append(app, [status, plot, top]);
    const fixedTo = fixedToParam || (chosen.toNs !== null ? Math.ceil(chosen.toNs / 1e6) : null);
    async function refresh() {
      const toMs = fixedTo || Date.now();
      const span = WINDOWS[win] / 1e6;
      const data = await api('/api/v1/monitor/bins', { instrument: instrument, y_field: field, weight_field: params.get('weight'), from_ms: Math.floor(toMs - span), to_ms: Math.ceil(toMs), t_bins: 240, y_bins: 80 });
      drawHeat(plot, top, data, field);
      status.textContent = data.bins.length + ' cells · ' + field + ' from ' + data.y_min + ' to ' + data.y_max + ' · ' + (fixedTo ? 'fixed window' : 'live, refreshed ' + new Date().toISOString().slice(11, 19) + ' UTC') + (data.truncated ? ' · newest 200 000 entities only' : '');
      status.dataset.cells = String(data.bins.length);
    }
    await refresh();
    if (!fixedTo) liveTimer = setInterval(() => { refresh().catch(() => {}); }, 10000);
  }

  function drawHeat(plot, top, data, field) {
    clear(plot); clear(top);
    const W = 960, H = 400, L = 60, B = 24, T = 8, R = 8;
    const cw = (W - L - R) / data.t_bins, ch = (H - T - B) / data.y_bins;
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', id: 'heatmap-svg' });
    const axis = s('g', { class: 'axis' });
    for (let i = 0; i <= 4; i++) {
      const yv = data.y_min + (i / 4) * (data.y_max - data.y_min);
      const y = H - B - (i / 4) * (H - T - B);
      axis.appendChild(s('line', { x1: L, x2: W - R, y1: y, y2: y }));
      axis.appendChild(s('text', { x: L - 4, y: y + 3, 'text-anchor': 'end' }, Number(yv.toPrecision(4)).toString()));
      const t = data.from_ns + (i / 4) * (data.to_ns - data.from_ns);
      axis.appendChild(s('text', { x: L + (i / 4) * (W - L - R), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, new Date(t / 1e6).toISOString().slice(11, 16) + ' UTC'));
    }
    axis.appendChild(s('text', { x: 4, y: 12 }, field));
    svg.appendChild(axis);
    const wmax = data.weight_max || 1;
    for (const b of data.bins) {
      const x = L + b.t * cw, y = H - B - (b.y + 1) * ch;
      const shade = 0.35 + 0.65 * (b.weight / wmax);
      const rect = s('rect', { class: 'cell', x: x, y: y, width: Math.max(cw, 2), height: Math.max(ch, 2), fill: `rgba(192, 57, 43, ${shade.toFixed(3)})`, 'data-id': b.id },
        s('title', null, b.id + '\n' + field + ' = ' + b.yv + ' · ' + fmtTime(b.ts) + ' · ' + b.count + ' in cell'));
      rect.addEventListener('click', () => { location.href = entityHref(b.id); });
      svg.appendChild(rect);
    }
    plot.appendChild(svg);
    const best = data.bins.slice().sort((a, b) => b.weight - a.weight || b.yv - a.yv).slice(0, 10);
    top.appendChild(h('h2', null, 'Highest cells'));
    top.appendChild(h('table', null, h('thead', null, h('tr', null, h('th', null, 'entity'), h('th', { class: 'num' }, field), h('th', { class: 'num' }, 'weight'), h('th', null, 'created'))),
      h('tbody', null, best.map((b) => h('tr', null, h('td', null, entityLink(b.id)), h('td', { class: 'num' }, String(b.yv)), h('td', { class: 'num' }, String(b.weight)), h('td', null, fmtTime(b.ts)))))));
  }

  // ---- 5. instruments ----------------------------------------------------------------------

  async function instrumentsPage() {
    document.title = 'Instruments · Entity Inspector';
    const instruments = await instrumentsList();
    app.appendChild(h('h1', null, 'Instruments'));
    if (!instruments.length) { app.appendChild(h('p', { class: 'muted' }, 'No instrument has sent data yet.')); return; }
    app.appendChild(h('ul', { id: 'instrument-list' }, instruments.map((i) => h('li', null, h('a', { href: '/instrument/' + encodeURIComponent(i) }, i)))));
  }

  async function instrumentPage(name, params) {
    document.title = name + ' · Entity Inspector';
    const [stages, latest] = await Promise.all([
      api('/api/v1/stages', { instrument: name }),
      api('/api/v1/entities', { instrument: name, limit: 10 }),
    ]);
    const newest = stages.length ? Math.max(...stages.map((st) => Number(st.last_seen_ns))) : null;
    const chosen = WINDOWS[params.get('window')] ? { win: params.get('window'), toNs: null } : defaultWindow(newest, Object.keys(WINDOWS), '24h');
    const win = chosen.win;
    app.appendChild(h('h1', { class: 'id' }, name));
    app.appendChild(h('p', null,
      h('a', { href: '/errors' + query({ instrument: name, window: win }) }, 'errors'), ' · ',
      h('a', { href: '/monitor' + query({ instrument: name }) }, 'data monitor'), ' · ',
      h('a', { href: '/' + query({ instrument: name }) }, 'search entities')));
    app.appendChild(h('form', { class: 'filters card', method: 'get', action: '/instrument/' + encodeURIComponent(name) }, h('label', null, 'window', windowSelect(win)), h('button', { type: 'submit' }, 'Show')));
    const note = windowNote(chosen, '24h');
    if (note) app.appendChild(h('p', { class: 'muted', id: 'window-note' }, note));
    const to = Math.floor(chosen.toNs !== null ? chosen.toNs : nowNs()) + 1;
    const timeline = await api('/api/v1/stages/timeline', { instrument: name, from_ns: Math.floor(to - WINDOWS[win]), to_ns: to, buckets: 48 });
    const byStage = new Map(timeline.stages.map((st) => [st.stage, st]));
    app.appendChild(h('h2', null, 'Stages'));
    app.appendChild(h('table', { id: 'stages' },
      h('thead', null, h('tr', null, h('th', null, 'stage'), h('th', { class: 'num' }, 'entities'), h('th', { class: 'num' }, 'errors'), h('th', { class: 'num' }, 'error rate'), h('th', null, 'last seen'), h('th', null, (chosen.toNs !== null ? win + ' up to the newest data' : 'last ' + win) + ': entities (bars) and errors (red)'))),
      h('tbody', null, stages.map((st) => h('tr', { class: 'stage', 'data-stage': st.stage },
        h('td', null, h('a', { href: '/' + query({ instrument: name, stage: st.stage }) }, st.stage)),
        h('td', { class: 'num' }, String(st.count)), h('td', { class: 'num' }, String(st.error_count)),
        h('td', { class: 'num' }, st.count ? (100 * st.error_count / st.count).toFixed(1) + ' %' : '–'),
        h('td', null, fmtTime(st.last_seen_ns)),
        h('td', null, sparkline(byStage.get(st.stage), timeline)))))));
    app.appendChild(h('h2', null, 'Latest entities'));
    app.appendChild(entityTable(latest.entities));
  }

  function sparkline(row, timeline) {
    const W = 300, H = 36;
    const svg = s('svg', { class: 'spark', viewBox: `0 0 ${W} ${H}`, width: W, height: H });
    if (!row) { svg.appendChild(s('text', { x: 2, y: 22, class: 'bar-label' }, 'none in window')); return svg; }
    const max = Math.max(1, ...row.counts);
    const bw = W / timeline.buckets;
    row.counts.forEach((c, i) => {
      if (!c) return;
      const hgt = (c / max) * (H - 2);
      const err = (row.error_counts[i] / max) * (H - 2);
      const t = timeline.from_ns + i * timeline.bucket_ns;
      svg.appendChild(s('g', null, s('title', null, fmtTime(t) + ': ' + c + ' entities, ' + row.error_counts[i] + ' errors (' + (100 * row.error_counts[i] / c).toFixed(1) + ' %)'),
        s('rect', { class: 'bar', x: i * bw, y: H - hgt, width: Math.max(1, bw - 1), height: hgt }),
        err ? s('rect', { class: 'bar error', x: i * bw, y: H - err, width: Math.max(1, bw - 1), height: err }) : null));
    });
    return svg;
  }

  // ---- logs: one panel for the trace page, the entity page and /logs ----------------------

  // Control characters (ANSI escapes and the like) would vanish from a text node: shown as
  // their escapes instead (`\x1b[31m`). Newlines and tabs stay.
  function visibleText(text) {
    return String(text).replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
  }
  const LOG_PREVIEW_CHARS = 500;
  const LOG_LEVELS = [['', 'any'], ['DEBUG', 'debug+'], ['INFO', 'info+'], ['WARN', 'warn+'], ['ERROR', 'error+']];
  function severityClass(n) { n = Number(n) || 0; return n >= 17 ? 'error' : n >= 13 ? 'warn' : n >= 9 ? 'info' : 'debug'; }
  function logKey(l) { return l.timestamp_ns + '|' + (l.span_id || '') + '|' + l.body; }

  // A list of log lines with a severity filter and a text search. `fixed` are the API filters
  // the page owns (trace_id, entity_id, …); `showTrace` adds each line's trace link; `onLine`
  // makes lines with a span clickable. Returns { el, load, setSpan, highlight, prepend }.
  function logPanel(fixed, opts) {
    opts = opts || {};
    const state = { spanId: null, cursor: null, highlight: null, keys: new Set() };
    const severity = h('select', { name: 'severity', class: 'log-severity' }, LOG_LEVELS.map(([v, t]) => h('option', { value: v }, t)));
    severity.value = opts.severity || '';
    const text = h('input', { name: 'q', class: 'log-q', size: 24, placeholder: 'text in the line', value: opts.q || '' });
    const spanNote = h('span', { class: 'muted log-span-note' });
    const count = h('span', { class: 'muted log-count' });
    const list = h('div', { class: 'log-lines', role: 'log' });
    const more = h('button', { type: 'button', class: 'secondary log-more', hidden: true }, 'older lines');
    const form = h('form', { class: 'log-tools' }, h('label', null, 'severity ', severity), h('label', null, 'text ', text),
      h('button', { type: 'submit' }, 'filter'), spanNote, count);
    const el = h('div', { class: 'log-panel' }, form, opts.extraTools || null, list, more);
    form.addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
    severity.addEventListener('change', () => load());
    more.addEventListener('click', () => load(true));

    function params(extra) {
      return Object.assign({}, fixed, { severity: severity.value, q: text.value.trim(), span_id: state.spanId, order: opts.order, limit: opts.limit || 200 }, extra || {});
    }
    function lineEl(l) {
      const body = visibleText(l.body);
      const long = body.length > LOG_PREVIEW_CHARS;
      const bodyEl = h('span', { class: 'log-body' }, long ? body.slice(0, LOG_PREVIEW_CHARS) : body);
      const expand = long ? h('button', { type: 'button', class: 'secondary log-expand' }, 'show all ' + Math.round(body.length / 1024) + ' KB') : null;
      if (expand) expand.addEventListener('click', (ev) => { ev.stopPropagation(); bodyEl.textContent = body; expand.remove(); });
      const row = h('div', { class: 'log-line sev-' + severityClass(l.severity_number) + (l.span_id && l.span_id === state.highlight ? ' highlight' : ''), 'data-span-id': l.span_id || '', 'data-trace-id': l.trace_id || '', 'data-severity': l.severity_number },
        h('span', { class: 'log-time' }, fmtTime(l.timestamp_ns)),
        h('span', { class: 'badge log-level ' + severityClass(l.severity_number) }, l.severity || '–'),
        h('span', { class: 'log-src muted' }, [l.service_name, l.process_name].filter(Boolean).join(' · ') || '–'),
        bodyEl, expand,
        opts.showTrace && l.trace_id ? h('span', { class: 'log-trace' }, traceLink(l.trace_id, l.span_id, 'trace ' + shortId(l.trace_id, 9))) : null,
        opts.showTrace && l.entity_id ? h('span', { class: 'log-entity' }, entityLink(l.entity_id, shortId(l.entity_id, 24))) : null);
      if (opts.onLine && l.span_id) {
        row.classList.add('clickable');
        row.title = 'show span ' + l.span_id + ' in the waterfall';
        row.addEventListener('click', (ev) => { if (ev.target.closest('a, button')) return; opts.onLine(l); });
      }
      return row;
    }
    function showCount() {
      const n = list.querySelectorAll('.log-line').length;
      count.textContent = n + ' line' + (n === 1 ? '' : 's') + (state.cursor ? ' (more below)' : '');
      el.dataset.lines = String(n);
    }
    async function load(older) {
      if (!older) { clear(list); state.keys.clear(); state.cursor = null; }
      el.dataset.loaded = 'false';
      let page;
      try { page = await api('/api/v1/logs', params(older ? { cursor: state.cursor } : null), { exactNs: true }); } catch (e) {
        list.appendChild(errorBox(e)); el.dataset.loaded = 'true'; return;
      }
      for (const l of page.logs || []) { state.keys.add(logKey(l)); list.appendChild(lineEl(l)); }
      state.cursor = page.next_cursor;
      more.hidden = !state.cursor;
      if (!list.querySelector('.log-line')) list.appendChild(h('p', { class: 'muted log-empty' }, opts.empty || 'No log lines match.'));
      showCount();
      el.dataset.loaded = 'true';
    }
    // Newer lines on top (the tail of a newest-first list); lines already shown are skipped.
    function prepend(lines) {
      const empty = list.querySelector('.log-empty');
      if (empty && lines.length) empty.remove();
      for (const l of lines.slice().reverse()) {
        if (state.keys.has(logKey(l))) continue;
        state.keys.add(logKey(l));
        list.insertBefore(lineEl(l), list.firstChild);
      }
      showCount();
    }
    function setSpan(spanId, label) {
      state.spanId = spanId;
      clear(spanNote);
      if (spanId) {
        const all = h('button', { type: 'button', class: 'secondary log-all' }, 'all lines of the trace');
        all.addEventListener('click', () => setSpan(null));
        append(spanNote, ['only span ', h('span', { class: 'id' }, label || spanId), ' ', all]);
      }
      load();
    }
    function highlight(spanId) {
      state.highlight = spanId;
      for (const row of list.querySelectorAll('.log-line')) row.classList.toggle('highlight', !!spanId && row.dataset.spanId === spanId);
    }
    return { el, load, setSpan, highlight, prepend, params };
  }

  async function logsPage(params) {
    document.title = 'Logs · Entity Inspector';
    app.appendChild(h('h1', null, 'Logs'));
    const instruments = await instrumentsList();
    const win = params.get('window') || '1h';
    const form = h('form', { class: 'filters card', method: 'get', action: '/logs', id: 'logs-form' },
      h('label', null, 'instrument', instrumentSelect('instrument', instruments, params.get('instrument') || '', true)),
      h('label', null, 'service', h('input', { name: 'service', value: params.get('service') || '', size: 14 })),
      h('label', null, 'process', h('input', { name: 'process', value: params.get('process') || '', size: 18 })),
      h('label', null, 'window', windowSelect(win)),
      h('button', { type: 'submit' }, 'search'));
    app.appendChild(form);
    const fromNs = () => (WINDOWS[win] ? Math.floor(nowNs() - WINDOWS[win]) : null);
    const fixed = { instrument: params.get('instrument'), service: params.get('service'), process: params.get('process'), from_ns: fromNs() };
    const pause = h('button', { type: 'button', class: 'secondary', id: 'tail-toggle' }, 'pause live tail');
    const tailNote = h('span', { class: 'muted', id: 'tail-state' }, 'live: new lines appear on top every 2 s');
    const panel = logPanel(fixed, { order: 'desc', showTrace: true, severity: params.get('severity') || '', q: params.get('q') || '', extraTools: h('div', { class: 'log-tail' }, pause, ' ', tailNote), empty: 'No log lines in this window.' });
    panel.el.id = 'logs-panel';
    app.appendChild(h('section', { class: 'card' }, panel.el));
    await panel.load();
    let paused = false;
    let newest = null;
    async function tick() {
      if (paused) return;
      // Lines since the last poll (and the last second again: equal timestamps are deduplicated).
      const since = newest !== null ? newest : Math.floor(nowNs() - 5e9);
      let page;
      try { page = await api('/api/v1/logs', panel.params({ from_ns: since, order: 'asc', cursor: null, limit: 500 }), { exactNs: true }); } catch (e) { tailNote.textContent = 'live tail: ' + e.message; return; }
      const lines = page.logs || [];
      if (lines.length) {
        newest = lines[lines.length - 1].timestamp_ns;
        panel.prepend(lines.slice().reverse());
      }
      panel.el.dataset.polls = String(Number(panel.el.dataset.polls || 0) + 1);
    }
    pause.addEventListener('click', () => {
      paused = !paused;
      pause.textContent = paused ? 'resume live tail' : 'pause live tail';
      tailNote.textContent = paused ? 'paused: new lines are not fetched' : 'live: new lines appear on top every 2 s';
      panel.el.dataset.paused = String(paused);
    });
    panel.el.dataset.paused = 'false';
    liveTimer = setInterval(tick, 2000);
  }

  // ---- 6. traces ---------------------------------------------------------------------------

  function traceHref(traceId, spanId) { return '/trace/' + encodeURIComponent(traceId) + (spanId ? query({ span: spanId }) : ''); }
  function traceLink(traceId, spanId, text) {
    return h('a', { href: traceHref(traceId, spanId), class: 'id trace-link', 'data-trace-id': traceId }, text === undefined ? shortId(traceId, 13) : text);
  }
  // What a span is to the provenance model, as a sentence about its trace.
  function entitySentence(traceId, spanId, role, entityId, spanName) {
    if (!entityId || (role !== 'creation' && role !== 'operation')) return null;
    return ['During trace ', traceLink(traceId, spanId), ' the pipeline ', role === 'creation' ? 'created' : 'operated on', ' entity ',
      entityLink(entityId), role === 'operation' && spanName ? ' (' + spanName + ')' : '', '.'];
  }
  // A value of a plain-attributes object as text: strings as they are, anything else as JSON.
  function attrText(v) { return typeof v === 'string' ? v : JSON.stringify(v); }
  function attrTable(attrs, empty, id) {
    const keys = Object.keys(attrs || {}).sort();
    if (!keys.length) return h('p', { class: 'muted', id: id }, empty);
    return h('table', { class: 'kv', id: id }, h('tbody', null, keys.map((k) => h('tr', null, h('td', null, k), h('td', null, attrText(attrs[k]))))));
  }
  // "250ms", "1.5 s", "20us", "3m", "100ns"; a bare number is milliseconds. Null when unreadable.
  function parseDuration(text) {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|min|h)?\s*$/.exec(text || '');
    if (!m) return null;
    const unit = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, min: 60e9, h: 3600e9 }[m[2] || 'ms'];
    return Math.round(Number(m[1]) * unit);
  }
  // Without a span store here, the traces live in Tempo: the page says so and links there.
  function noSpanStore(err, traceId) {
    const out = [h('p', { class: e404(err) ? 'muted' : 'error-text', id: 'trace-missing' }, err.message)];
    const href = tempoHref(traceId);
    if (e404(err) && href) out.push(h('p', null, h('a', { href: href, target: '_blank', rel: 'noopener noreferrer', id: 'trace-in-grafana' }, traceId ? 'Open trace ' + traceId + ' in Grafana' : 'Search traces in Grafana')));
    return out;
  }
  function e404(err) { return err && err.status === 404; }

  async function tracesPage(params) {
    document.title = 'Traces · Entity Inspector';
    const instruments = await instrumentsList();
    const errorsOnly = params.get('status') === 'error';
    const winSel = h('select', { name: 'window' }, h('option', { value: '' }, 'any time'), Object.keys(WINDOWS).map((w) => h('option', { value: w }, 'last ' + w)));
    winSel.value = WINDOWS[params.get('window')] ? params.get('window') : '';
    const form = h('form', { class: 'filters card', method: 'get', action: '/traces', id: 'traces-form' },
      h('label', null, 'service', h('input', { name: 'service', value: params.get('service') || '', size: 14, id: 'traces-service' })),
      h('label', null, 'span name', h('input', { name: 'name', value: params.get('name') || '', size: 14, id: 'traces-name' })),
      h('label', null, 'instrument', instrumentSelect('instrument', instruments, params.get('instrument') || '', true)),
      h('label', null, 'entity ID', h('input', { name: 'entity_id', value: params.get('entity_id') || '', size: 16, id: 'traces-entity' })),
      h('label', null, 'window', winSel),
      h('label', null, 'from (UTC)', h('input', { name: 'from', type: 'datetime-local', value: params.get('from') || '' })),
      h('label', null, 'to (UTC)', h('input', { name: 'to', type: 'datetime-local', value: params.get('to') || '' })),
      h('label', null, 'min duration', h('input', { name: 'min_duration', value: params.get('min_duration') || '', size: 8, placeholder: '250ms, 2s', id: 'traces-min-duration' })),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'status', value: 'error', id: 'traces-errors', checked: errorsOnly ? 'checked' : null }), 'errors only'),
      h('button', { type: 'submit', id: 'traces-submit' }, 'Search'));
    app.appendChild(h('h1', null, 'Traces'));
    app.appendChild(form);
    const apiParams = { service: params.get('service'), name: params.get('name'), instrument: params.get('instrument'), entity_id: params.get('entity_id'), status: errorsOnly ? 'error' : null, limit: Math.min(1000, Math.max(1, Number(params.get('limit')) || 50)) };
    const minText = params.get('min_duration');
    if (minText) {
      const min = parseDuration(minText);
      if (min === null) { app.appendChild(h('p', { class: 'error-text', id: 'traces-bad-duration' }, 'Not a duration: ', minText, ' (try 250ms, 1.5s or 2m).')); return; }
      apiParams.min_duration_ns = min;
    }
    const from = parseLocalTime(params.get('from'));
    const to = parseLocalTime(params.get('to'));
    if (from !== null) apiParams.from_ns = from;
    else if (WINDOWS[params.get('window')]) apiParams.from_ns = Math.floor(nowNs() - WINDOWS[params.get('window')]);
    if (to !== null) apiParams.to_ns = to;
    const results = h('section', { id: 'trace-results' });
    app.appendChild(results);
    const tbody = h('tbody');
    const count = h('p', { class: 'muted', id: 'trace-count' });
    const more = h('button', { class: 'secondary', type: 'button', id: 'traces-more' }, 'Load more');
    more.hidden = true;
    let cursor = null, total = 0, tableShown = false;
    async function load() {
      more.disabled = true;
      let page;
      try { page = await api('/api/v1/traces', Object.assign({}, apiParams, { cursor: cursor }), { exactNs: true }); } catch (e) {
        append(results, noSpanStore(e, null));
        more.hidden = true;
        return;
      }
      if (!tableShown) {
        tableShown = true;
        append(results, [count, h('table', { class: 'traces', id: 'traces-table' },
          h('thead', null, h('tr', null, h('th', null, 'root span'), h('th', null, 'service'), h('th', null, 'trace'), h('th', null, 'start'),
            h('th', { class: 'num' }, 'duration'), h('th', { class: 'num' }, 'spans'), h('th', { class: 'num' }, 'errors'), h('th', null, 'entities'))), tbody), more]);
      }
      page.traces.forEach((t) => tbody.appendChild(traceRow(t)));
      total += page.traces.length;
      cursor = page.next_cursor;
      count.textContent = total ? total + (cursor ? '+ traces, newest first' : (total === 1 ? ' trace' : ' traces') + ', newest first') : 'No trace matches.';
      count.dataset.traces = String(total);
      more.hidden = !cursor;
      more.disabled = false;
    }
    more.addEventListener('click', () => { load().then(() => { document.body.dataset.ready = 'true'; }); });
    await load();
  }

  function traceRow(t) {
    const ids = t.entity_ids || [];
    return h('tr', { class: 'trace' + (t.error_count ? ' error' : ''), 'data-trace-id': t.trace_id },
      h('td', null, h('a', { href: traceHref(t.trace_id), class: 'trace-root' }, t.root_name || '(unnamed)')),
      h('td', null, t.root_service || '–'),
      h('td', null, traceLink(t.trace_id)),
      h('td', null, fmtTime(t.start_ns)),
      h('td', { class: 'num' }, fmtDur(t.duration_ns)),
      h('td', { class: 'num' }, String(t.span_count)),
      h('td', { class: 'num' }, t.error_count ? h('span', { class: 'badge error' }, String(t.error_count)) : '0'),
      h('td', null, ids.length ? [ids.slice(0, 3).map((id) => h('div', null, entityLink(id, shortId(id, 32)))), ids.length > 3 ? h('div', { class: 'muted' }, '+' + (ids.length - 3) + ' more') : null] : h('span', { class: 'muted' }, 'none')));
  }

  // The waterfall: spans as rows in depth-first order (children by start, as the API sends
  // them), each indented under its parent with a bar on one time axis. Offsets are exact
  // (`nsSince` on the digits); only the rows in view exist in the DOM, so a trace of 10 000
  // spans scrolls as lightly as one of ten.
  const WF_ROW = 24;
  const WF_OVERSCAN = 12;

  async function tracePage(traceId, params) {
    document.title = 'Trace ' + shortId(traceId, 13) + ' · Entity Inspector';
    app.appendChild(h('h1', null, 'Trace ', h('span', { class: 'id', id: 'trace-id' }, traceId)));
    let data;
    try { data = await api('/api/v1/trace/' + encodeURIComponent(traceId), null, { exactNs: true }); } catch (e) {
      append(app, noSpanStore(e, traceId));
      // Logs are kept whether spans are or not.
      if (e404(e)) {
        const logs = logPanel({ trace_id: traceId }, { empty: 'No log lines in this trace either.' });
        logs.el.id = 'trace-logs';
        app.appendChild(h('section', { class: 'card' }, h('h2', null, 'Logs'), logs.el));
        await logs.load();
      }
      return;
    }
    const spans = data.spans || [];
    const byId = new Map();
    for (const sp of spans) byId.set(sp.span_id, { span: sp, children: [], parent: null, depth: 0 });
    const roots = [];
    for (const node of byId.values()) {
      const p = node.span.parent_span_id ? byId.get(node.span.parent_span_id) : null;
      if (p && p !== node) { node.parent = p; p.children.push(node); } else roots.push(node);
    }
    const t0 = spans.length ? earliest(spans.map((sp) => sp.start_ns)) : '0';
    for (const node of byId.values()) {
      node.start = nsSince(node.span.start_ns, t0);
      node.dur = Math.max(0, Number(node.span.duration_ns));
      node.error = node.span.status && node.span.status.code === 'error';
    }
    const total = Math.max(0, ...[...byId.values()].map((n) => n.start + n.dur));
    const errors = [...byId.values()].filter((n) => n.error).length;
    const services = new Set(spans.map((sp) => sp.service_name).filter(Boolean));
    // Depths without recursion: a chain of 10 000 spans must not overflow the stack.
    const stack = roots.slice();
    while (stack.length) { const n = stack.pop(); for (const c of n.children) { c.depth = n.depth + 1; stack.push(c); } }

    const entities = data.entities || [];
    app.appendChild(h('p', { class: 'muted', id: 'trace-summary', 'data-spans': spans.length, 'data-errors': errors },
      spans.length + ' span' + (spans.length === 1 ? '' : 's') + ' from ' + services.size + ' service' + (services.size === 1 ? '' : 's') +
      ', ' + errors + ' with errors · started ' + fmtTime(t0) + ' · lasted ' + fmtDur(total) +
      (data.partial ? ' · only the first ' + spans.length + ' spans (by start time) are shown' : '')));
    if (entities.length) {
      app.appendChild(h('p', { id: 'trace-entities' }, 'During this trace the pipeline worked on ' + entities.length + ' entit' + (entities.length === 1 ? 'y' : 'ies') + ': ',
        entities.slice(0, 12).map((id, i) => [i ? ', ' : '', entityLink(id, shortId(id, 40))]), entities.length > 12 ? ' and ' + (entities.length - 12) + ' more' : ''));
    }
    if (!spans.length) { app.appendChild(h('p', { class: 'muted' }, 'This trace has no spans.')); return; }

    const collapsed = new Set();
    let rows = [];
    let selected = null;
    function flatten() {
      rows = [];
      const todo = roots.slice().reverse();
      while (todo.length) {
        const n = todo.pop();
        rows.push(n);
        if (!collapsed.has(n)) for (let i = n.children.length - 1; i >= 0; i--) todo.push(n.children[i]);
      }
    }
    const pct = (offset) => (total > 0 ? (offset / total) * 100 : 0);

    const tools = h('div', { class: 'graph-tools' });
    const collapseAll = h('button', { type: 'button', class: 'secondary', id: 'collapse-all' }, 'collapse all');
    const expandAll = h('button', { type: 'button', class: 'secondary', id: 'expand-all' }, 'expand all');
    const shown = h('span', { class: 'muted', id: 'rows-shown' });
    append(tools, [collapseAll, expandAll, shown]);
    const axis = h('div', { class: 'wf-axis' }, h('div', { class: 'wf-label' }, 'span · service · process'),
      h('div', { class: 'wf-track' }, [0, 0.25, 0.5, 0.75, 1].map((f) => {
        const tick = h('span', { class: 'wf-tick' + (f === 1 ? ' end' : '') }, f ? '+' + fmtDur(f * total) : (total ? '0' : 'all in one instant'));
        tick.style.left = f * 100 + '%';
        return tick;
      })));
    const spacer = h('div', { class: 'wf-spacer' });
    const scroller = h('div', { id: 'waterfall', class: 'wf-scroll', tabindex: 0 }, spacer);
    const detail = h('aside', { class: 'card wf-detail', id: 'span-detail' }, h('p', { class: 'muted' }, 'Click a span to see its attributes, events, links and resource.'));
    app.appendChild(tools);
    app.appendChild(h('div', { class: 'wf-layout' }, h('section', { class: 'card wf-main' }, axis, scroller), detail));
    app.appendChild(h('p', { class: 'legend' }, 'Rows are spans, indented under their parent; ▾/▸ collapses or expands a subtree. Red bars and ✖ mark error status, purple ticks are span events, ◆ marks a span that created or operated on an entity. Arrow keys move the selection.'));
    const logs = logPanel({ trace_id: traceId }, {
      empty: 'No log lines in this trace.',
      onLine: (l) => { const n = byId.get(l.span_id); if (n) select(n, true, false, true); },
    });
    logs.el.id = 'trace-logs';
    app.appendChild(h('section', { class: 'card' }, h('h2', null, 'Logs'), h('p', { class: 'muted' }, 'Lines of this trace in time order; click a line to select its span, select a span to see only its lines.'), logs.el));

    function rowEl(n, index) {
      const sp = n.span;
      const indent = Math.min(n.depth, 40) * 14;
      const toggle = n.children.length
        ? h('button', { type: 'button', class: 'wf-toggle', title: (collapsed.has(n) ? 'expand ' : 'collapse ') + n.children.length + ' child span' + (n.children.length === 1 ? '' : 's') }, collapsed.has(n) ? '▸' : '▾')
        : h('span', { class: 'wf-toggle none' });
      if (n.children.length) toggle.addEventListener('click', (ev) => { ev.stopPropagation(); if (collapsed.has(n)) collapsed.delete(n); else collapsed.add(n); refresh(); });
      const label = h('div', { class: 'wf-label' }, toggle,
        n.error ? h('span', { class: 'wf-err' }, '✖ ') : null,
        sp.entity_id && sp.role !== 'span' ? h('span', { class: 'wf-entity', title: sp.role + ' of ' + sp.entity_id }, '◆ ') : null,
        h('span', { class: 'wf-name' }, sp.name),
        h('span', { class: 'wf-svc' }, ' ' + [sp.service_name, sp.process_name].filter(Boolean).join(' · ')),
        collapsed.has(n) ? h('span', { class: 'wf-hidden' }, ' +' + n.children.length) : null);
      label.firstChild.style.marginLeft = indent + 'px';
      const bar = h('div', { class: 'wf-bar' });
      bar.style.left = pct(n.start) + '%';
      bar.style.width = pct(n.dur) + '%';
      const endPct = pct(n.start + n.dur);
      const dur = h('span', { class: 'wf-dur' }, fmtDur(n.dur));
      // After the bar when there is room, else before it, else inside its end.
      if (endPct <= 80) dur.style.left = endPct + '%';
      else if (pct(n.start) >= 12) dur.style.right = (100 - pct(n.start)) + '%';
      else { dur.classList.add('inside'); dur.style.right = (100 - endPct) + '%'; }
      const track = h('div', { class: 'wf-track' }, bar, dur);
      for (const ev of sp.events || []) {
        const mark = h('span', { class: 'wf-event' + (ev.name === ERROR_EVENT ? ' error' : ''), title: ev.name + ' · +' + fmtDur(nsSince(ev.timestamp_ns, sp.start_ns)) });
        mark.style.left = pct(nsSince(ev.timestamp_ns, t0)) + '%';
        track.appendChild(mark);
      }
      const row = h('div', { class: 'wf-row' + (n.error ? ' error' : '') + (n === selected ? ' selected' : ''), 'data-span-id': sp.span_id, 'data-parent-span-id': n.parent ? n.parent.span.span_id : '', 'data-depth': n.depth, 'data-index': index,
        title: sp.name + ' · ' + fmtDur(n.dur) + ' · starts at +' + fmtDur(n.start) + (sp.status && sp.status.message ? ' · ' + sp.status.message : '') }, label, track);
      row.style.top = index * WF_ROW + 'px';
      row.addEventListener('click', () => select(n, false));
      return row;
    }

    let frame = 0;
    function paint() {
      frame = 0;
      const first = Math.max(0, Math.floor(scroller.scrollTop / WF_ROW) - WF_OVERSCAN);
      const last = Math.min(rows.length, Math.ceil((scroller.scrollTop + scroller.clientHeight) / WF_ROW) + WF_OVERSCAN);
      clear(spacer);
      for (let i = first; i < last; i++) spacer.appendChild(rowEl(rows[i], i));
      scroller.dataset.first = String(first);
      scroller.dataset.last = String(last);
    }
    function refresh() {
      flatten();
      spacer.style.height = rows.length * WF_ROW + 'px';
      scroller.dataset.rows = String(rows.length);
      shown.textContent = rows.length === spans.length ? rows.length + ' rows' : rows.length + ' of ' + spans.length + ' rows shown';
      paint();
    }
    scroller.addEventListener('scroll', () => { if (!frame) frame = requestAnimationFrame(paint); });
    collapseAll.addEventListener('click', () => { for (const n of byId.values()) if (n.children.length && n.parent) collapsed.add(n); refresh(); });
    expandAll.addEventListener('click', () => { collapsed.clear(); refresh(); });
    scroller.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
      ev.preventDefault();
      const at = selected ? rows.indexOf(selected) : -1;
      const next = rows[Math.max(0, Math.min(rows.length - 1, at + (ev.key === 'ArrowDown' ? 1 : -1)))];
      if (next) select(next, true);
    });

    // Selecting opens the span's details; `reveal` expands its ancestors and scrolls it into
    // view; the URL names the span unless `quiet` (the root shown by default is not a choice).
    function select(n, reveal, quiet, fromLog) {
      selected = n;
      if (reveal) {
        for (let p = n.parent; p; p = p.parent) collapsed.delete(p);
        flatten();
        const at = rows.indexOf(n);
        const top = at * WF_ROW;
        if (top < scroller.scrollTop || top + WF_ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = Math.max(0, top - scroller.clientHeight / 3);
      }
      refresh();
      showDetail(n);
      logs.highlight(n.span.span_id);
      // A span chosen in the waterfall filters the lines; one chosen from a line keeps them all.
      if (!quiet && !fromLog) logs.setSpan(n.span.span_id, n.span.name);
      if (!quiet) history.replaceState(null, '', traceHref(traceId, n.span.span_id));
    }

    function showDetail(n) {
      const sp = n.span;
      clear(detail);
      detail.dataset.spanId = sp.span_id;
      const dl = h('dl', { class: 'identity', id: 'span-identity' });
      const row = (k, v) => append(dl, [h('dt', null, k), h('dd', null, v)]);
      row('span', h('span', { class: 'id' }, sp.span_id));
      row('parent', n.parent ? h('a', { href: traceHref(traceId, n.parent.span.span_id), class: 'id span-jump', 'data-span-id': n.parent.span.span_id }, n.parent.span.name) : sp.parent_span_id ? h('span', { class: 'id' }, sp.parent_span_id + ' (not in this trace)') : 'none (root)');
      row('children', String(n.children.length));
      row('service', sp.service_name || '–');
      row('process', sp.process_name || '–');
      row('instrument', sp.instrument_id ? h('a', { href: '/instrument/' + encodeURIComponent(sp.instrument_id) }, sp.instrument_id) : '–');
      row('kind', sp.kind || '–');
      row('status', [statusBadge(n.error ? 'error' : (sp.status && sp.status.code) || 'unset'), sp.status && sp.status.message ? ' ' + sp.status.message : '']);
      row('start', fmtTime(sp.start_ns) + ' (+' + fmtDur(n.start) + ')');
      row('duration', fmtDur(n.dur));
      row('role', sp.role || 'span');
      const sentence = entitySentence(traceId, sp.span_id, sp.role, sp.entity_id, sp.name);
      append(detail, [
        h('h2', { class: 'wf-detail-name', id: 'span-name' }, sp.name),
        sentence ? h('p', { id: 'span-entity', class: 'entity-sentence' }, sentence) : null,
        dl,
        h('h3', null, 'Attributes'), attrTable(sp.attributes, 'No attributes.', 'span-attributes'),
        h('h3', null, 'Events'), spanEvents(sp),
        h('h3', null, 'Links'), spanLinks(sp),
        h('h3', null, 'Resource'), attrTable(sp.resource, 'No resource attributes.', 'span-resource'),
      ]);
      for (const a of detail.querySelectorAll('a.span-jump')) {
        a.addEventListener('click', (ev) => {
          const target = byId.get(a.dataset.spanId);
          if (!target) return;
          ev.preventDefault();
          select(target, true);
        });
      }
    }

    function spanEvents(sp) {
      const events = sp.events || [];
      if (!events.length) return h('p', { class: 'muted', id: 'span-events' }, 'No events.');
      return h('table', { class: 'events-table', id: 'span-events' },
        h('thead', null, h('tr', null, h('th', null, 'at'), h('th', null, 'event'), h('th', null, 'attributes'))),
        h('tbody', null, events.map((ev) => h('tr', { class: 'span-event' + (ev.name === ERROR_EVENT ? ' error' : '') },
          h('td', null, '+' + fmtDur(nsSince(ev.timestamp_ns, sp.start_ns))),
          h('td', null, h('span', { class: 'badge' + (ev.name === ERROR_EVENT ? ' error' : '') }, ev.name)),
          h('td', null, Object.keys(ev.attributes || {}).sort().map((k) => h('div', null, h('span', { class: 'muted' }, k + ': '), attrText(ev.attributes[k]))))))));
    }

    function spanLinks(sp) {
      const links = sp.links || [];
      if (!links.length) return h('p', { class: 'muted', id: 'span-links' }, 'No links.');
      return h('ul', { class: 'span-links', id: 'span-links' }, links.map((l) => {
        const here = l.trace_id === traceId;
        const a = h('a', { href: traceHref(l.trace_id, l.span_id), class: 'id ' + (here ? 'span-jump' : 'trace-link'), 'data-trace-id': l.trace_id, 'data-span-id': l.span_id },
          (here ? 'this trace' : 'trace ' + shortId(l.trace_id, 13)) + ' · span ' + l.span_id);
        const attrs = Object.keys(l.attributes || {}).sort();
        return h('li', null, a, attrs.length ? h('div', { class: 'muted' }, attrs.map((k) => k + '=' + attrText(l.attributes[k])).join(', ')) : null);
      }));
    }

    refresh();
    const focus = params.get('span');
    const target = focus && byId.get(focus);
    if (!target) logs.load();
    if (target) select(target, true);
    else if (focus) app.insertBefore(h('p', { class: 'muted', id: 'span-missing' }, 'Span ', h('span', { class: 'id' }, focus), ' is not in this trace.'), tools);
    else select(roots[0], false, true);
  }


  // ---- 7. the herald's own health ------------------------------------------------------------

  // The header links to the health page, marked, while something is degraded.
  function markDegraded(reasons) {
    const link = document.querySelector('header nav a[data-nav="health"]');
    if (!link) return;
    link.classList.toggle('degraded', reasons.length > 0);
    link.textContent = reasons.length ? 'Health ⚠' : 'Health';
    link.title = reasons.join('\n');
  }
  function checkDegraded() {
    // Not `api()`: a failed check must not send anyone to the sign-in page.
    fetch('/api/v1/health', { headers: { accept: 'application/json' } })
      .then((r) => (r.ok ? r.json() : null))
      .then((b) => { if (b) markDegraded(b.degraded || []); })
      .catch(() => {});
  }

  function fmtNum(x, digits) {
    if (typeof x !== 'number' || !isFinite(x)) return '–';
    return x.toLocaleString('en-US', { maximumFractionDigits: digits === undefined ? 0 : digits });
  }
  function fmtRate(x) { return fmtNum(x, x < 10 ? 2 : 0) + ' /s'; }
  function sumValues(obj) { return Object.values(obj || {}).reduce((a, b) => a + Number(b || 0), 0); }
  function fmtAge(seconds) { return seconds === null || seconds === undefined ? '–' : fmtDur(seconds * 1e9) + ' ago'; }

  function fmtBytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return fmtNum(n, i ? 1 : 0) + ' ' + units[i];
  }
  function retentionText(r, now) {
    if (!r) return 'no retention job';
    if (!r.passes && !r.failed_passes) return 'no pass yet';
    const last = r.last_pass_ns ? ', last ' + fmtAge(now - r.last_pass_ns / 1e9) : '';
    return fmtNum(r.passes) + ' passes, ' + fmtNum(r.removed) + ' removed' + (r.failed_passes ? ', ' + fmtNum(r.failed_passes) + ' failed' : '') + last;
  }

  async function healthPage() {
    document.title = 'Health · Entity Inspector';
    app.appendChild(h('h1', null, 'Herald health'));
    const note = h('p', { class: 'muted', id: 'health-note' }, 'Read from this herald’s metrics; refreshed every 2 s.');
    const banner = h('div', { id: 'degraded', class: 'card degraded-banner', hidden: true });
    const grid = h('div', { class: 'health-grid', id: 'health-panels' });
    app.appendChild(note);
    app.appendChild(banner);
    app.appendChild(grid);
    let prev = null;
    let refreshes = 0;

    // One panel: a title and rows of (label, value, field name for tests).
    function panel(id, title, rows, extra) {
      return h('section', { class: 'card health-panel', id: 'panel-' + id },
        h('h2', null, title),
        h('table', { class: 'kv' }, h('tbody', null, rows.map(([label, value, field]) =>
          h('tr', null, h('td', null, label), h('td', { class: 'num', 'data-field': field || null }, value))))),
        extra || null);
    }

    function render(cur) {
      // Rates over the last refresh; before the second read, since the herald started.
      const since = prev || { now: cur.started, ingest: {}, write: { commits: { count: 0, sum: 0 } }, refusals: { exports: {} } };
      const dt = Math.max(cur.now - since.now, 1e-3);
      const span = prev ? 'last ' + fmtNum(dt, 1) + ' s' : 'since start';
      const rate = (k) => (cur.ingest[k] - (since.ingest[k] || 0)) / dt;
      const commits = cur.write.commits.count - since.write.commits.count;
      const latency = commits > 0 ? (cur.write.commits.sum - since.write.commits.sum) / commits
        : (cur.write.commits.count > 0 ? cur.write.commits.sum / cur.write.commits.count : 0);
      const refusedNow = sumValues(cur.refusals.exports);
      const refusedRecent = refusedNow - sumValues(since.refusals.exports);
      const fwd = cur.forwarder;
      const pc = cur.platform_check;
      const last = pc.enabled ? pc.last : null;
      const nt = cur.notifications;
      clear(grid);
      append(grid, [
        panel('ingest', 'Ingest (' + span + ')', [
          ['spans', fmtRate(rate('spans_received')), 'spans_rate'],
          ['log records', fmtRate(rate('logs_received')), 'logs_rate'],
          ['entities created', fmtRate(rate('entities_created')), 'entities_rate'],
          ['spans received, total', fmtNum(cur.ingest.spans_received), 'spans_total'],
          ['errors (' + ERROR_EVENT + '), total', fmtNum(cur.ingest.errors), 'errors_total'],
        ]),
        panel('writes', 'Writes', [
          ['commit latency (' + (commits > 0 ? span : 'mean since start') + ')', fmtDur(latency * 1e9), 'write_latency'],
          ['commits', fmtRate(commits / dt), 'commit_rate'],
          ['queue depth (records)', fmtNum(cur.write.queue_records), 'queue_depth'],
          ['failed commits, total', fmtNum(sumValues(cur.write.failures)), 'write_failures'],
        ]),
        panel('refusals', 'Refusals', [
          ['exports refused (' + span + ')', fmtNum(refusedRecent), 'refused_recent'],
          ['exports refused, total', fmtNum(refusedNow), 'refused_total'],
          ['spans rejected as malformed', fmtNum(cur.refusals.spans_rejected), 'spans_rejected'],
          ['denied by auth', fmtNum(cur.refusals.auth_denied), 'auth_denied'],
        ], Object.keys(cur.refusals.exports).length
          ? h('p', { class: 'muted' }, Object.entries(cur.refusals.exports).map(([k, v]) => k + ': ' + fmtNum(v)).join(' · ')) : null),
        panel('forwarder', 'Forwarder', fwd.configured ? [
          ['state', sumValues({ a: fwd.spans.failed, b: fwd.logs.failed }) > 0 || fwd.queue_requests > 0 ? 'on, backlog' : 'on', 'forward_state'],
          ['queue (requests)', fmtNum(fwd.queue_requests), 'forward_queue'],
          ['spans sent', fmtNum(fwd.spans.sent || 0), 'forward_sent'],
          ['spans failed or dropped', fmtNum(sumValues(fwd.spans) - (fwd.spans.sent || 0)), 'forward_lost'],
        ] : [['state', 'off (COLLECTOR_ENDPOINT not set)', 'forward_state']]),
        panel('store', 'Store', [
          ['backend', cur.store.backend + (cur.store.ready ? ', ready' : ', NOT READY'), 'store_state'],
          ['connections in use / open', fmtNum(cur.store.connections_in_use) + ' / ' + fmtNum(cur.store.connections_open), 'connections'],
          ['TraceStore entries', fmtNum(cur.store.trace_store_size), 'trace_store_size'],
          ['spans stored, total', fmtNum(cur.ingest.spans_stored), 'spans_stored'],
          ['failed writes, total', fmtNum(cur.store.write_errors), 'db_write_errors'],
          ['size on disk', cur.store.size_bytes === null ? 'unknown' : fmtBytes(cur.store.size_bytes), 'store_size'],
          ['retention', retentionText(cur.store.retention, cur.now), 'retention'],
        ]),
        panel('canary', 'Platform check', pc.enabled ? [
          ['state', last ? (last.ok ? 'ok' : 'FAILING') : 'waiting for the first check', 'canary_state'],
          ['interval', fmtNum(pc.interval_seconds) + ' s', 'canary_interval'],
          ['last check', last ? fmtAge(cur.now - last.checked_at) : '–', 'canary_checked'],
          ['last success', last && last.last_success ? fmtAge(cur.now - last.last_success) : 'never', 'canary_success'],
        ] : [['state', 'off (PLATFORM_CHECK_INTERVAL_SECS=0)', 'canary_state']],
        last && last.problems.length ? h('ul', { class: 'problems' }, last.problems.map((p) => h('li', null, p))) : null),
        panel('notifications', 'Notifications', nt.configured ? [
          ['outbox depth', fmtNum(nt.outbox_depth), 'outbox_depth'],
          ['sent, total', fmtNum(nt.sent), 'notifications_sent'],
          ['failed, total', fmtNum(nt.errors), 'notification_errors'],
          ['dropped (outbox full), total', fmtNum(nt.dropped), 'notifications_dropped'],
        ] : [['outbox', 'not configured', 'outbox_depth']]),
      ]);
      const reasons = cur.degraded || [];
      clear(banner);
      banner.hidden = reasons.length === 0;
      if (reasons.length) append(banner, [h('strong', null, 'Degraded'), h('ul', null, reasons.map((r) => h('li', null, r)))]);
      markDegraded(reasons);
      prev = cur;
      refreshes += 1;
      grid.dataset.refreshes = String(refreshes);
    }

    async function tick() {
      try { render(await api('/api/v1/health')); note.textContent = 'Read from this herald’s metrics; refreshed every 2 s.'; }
      catch (e) { note.textContent = 'Could not refresh: ' + e.message; }
    }
    await tick();
    liveTimer = setInterval(tick, 2000);
  }

  route();
})();

// Wharf's pages. No framework and no build step: this file is served as it
// is (embedded in the binary). Every page is built from DOM nodes, never from
// markup strings (the CSP refuses HTML sinks), and reads the registry's own
// API from the same origin:
//   /v2/_zot/ext/search   GraphQL (GlobalSearch, ExpandedRepoInfo), when on;
//   /v2/_catalog, /v2/<name>/tags/list, manifests: when search is off;
//   /v2/_wharf/status     the cache page;
//   /v2/_zot/ext/mgmt     whether the registry asks for credentials.
// Credentials (Basic) live in sessionStorage, for this tab only.
'use strict';
(() => {
  const main = document.getElementById('main');
  const who = document.getElementById('who');
  const announcer = document.getElementById('announce');
  const AUTH = 'wharf.basic', USER = 'wharf.user', TOOL = 'wharf.tool';
  const ACCEPT = [
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
    'application/vnd.docker.distribution.manifest.v2+json',
  ].join(', ');
  const COMMON_OS = ['linux', 'windows'];
  const COMMON_ARCH = ['amd64', 'arm64', 'arm', '386', 'ppc64le', 's390x', 'riscv64'];
  const DETAILS_AT_ONCE = 20; // without search: tags whose manifests are read unasked

  let page = 0; // the current page's number: late answers for an old one are dropped
  let timers = [];
  let moved = false; // navigated within the app: focus goes to the new heading
  let authMode = null; // null: unknown; false: none; 'basic'; 'other'
  let saw401 = false;
  let searchOff = false; // the search endpoint is not there: use the registry's API

  class HttpError extends Error {
    constructor(status, what) {
      super(what + ': HTTP ' + status);
      this.status = status;
    }
  }
  class AuthNeeded extends Error {}
  class NoSearch extends Error {}
  class QueryError extends Error {}

  // ---- DOM ----

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat(Infinity)) {
      if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function announce(text) {
    announcer.textContent = '';
    setTimeout(() => { announcer.textContent = text; }, 50);
  }

  function later(fn, ms) {
    const t = setTimeout(fn, ms);
    timers.push(t);
    return t;
  }

  function show(title, ...nodes) {
    document.title = title + ' · Wharf';
    main.replaceChildren(...nodes);
    if (moved) {
      const h1 = main.querySelector('h1');
      (h1 || main).focus();
    }
  }

  function notice(text, cls) {
    return h('p', {class: 'notice' + (cls ? ' ' + cls : ''), role: cls === 'error' ? 'alert' : null}, text);
  }

  function field(id, label, input, cls) {
    return h('div', {class: 'field' + (cls ? ' ' + cls : '')}, h('label', {for: id}, label), input);
  }

  // ---- formatting ----

  function bytes(n) {
    n = Number(n);
    if (!Number.isFinite(n) || n < 0) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function ago(d) {
    const s = (Date.now() - d.getTime()) / 1000;
    if (s < 0) return d.toLocaleString();
    if (s < 60) return 'just now';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    if (s < 86400 * 45) return Math.floor(s / 86400) + ' days ago';
    return d.toLocaleDateString();
  }

  function when(t) {
    if (t == null || t === '' || t === 0) return '—';
    const d = new Date(t);
    if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1971) return '—';
    return h('time', {datetime: d.toISOString(), title: d.toLocaleString()}, ago(d));
  }

  function duration(s) {
    s = Math.max(0, Math.floor(Number(s) || 0));
    const d = Math.floor(s / 86400), hr = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + ' d ' + hr + ' h';
    if (hr) return hr + ' h ' + m + ' min';
    if (m) return m + ' min ' + (s % 60) + ' s';
    return s + ' s';
  }

  function percent(part, whole) {
    return whole > 0 ? (100 * part / whole).toFixed(whole >= 1000 ? 1 : 0) + '%' : '—';
  }

  function short(digest) {
    return digest ? digest.replace(/^(sha(?:256|512):)?([0-9a-f]{12})[0-9a-f]+$/, '$1$2') : '—';
  }

  function platform(p) {
    if (!p || !p.os && !p.arch) return 'unknown';
    return [p.os || '?', p.arch || '?', p.variant].filter(Boolean).join('/');
  }

  function repoPath(name, tag) {
    return '/image/' + encodeURIComponent(name) + (tag ? '/tag/' + encodeURIComponent(tag) : '');
  }

  // ---- the API ----

  function b64(text) {
    return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
  }

  async function api(path, opts) {
    opts = opts || {};
    const headers = Object.assign({'X-ZOT-API-CLIENT': 'zot-ui'}, opts.headers);
    const basic = opts.basic || sessionStorage.getItem(AUTH);
    if (basic) headers.Authorization = 'Basic ' + basic;
    const r = await fetch(path, {headers, cache: 'no-store', credentials: 'same-origin'});
    if (r.status === 401 && !opts.basic) {
      saw401 = true;
      throw new AuthNeeded();
    }
    return r;
  }

  async function getJSON(path, what) {
    const r = await api(path);
    if (!r.ok) throw new HttpError(r.status, what || path);
    return r.json();
  }

  async function gql(query) {
    if (searchOff) throw new NoSearch();
    const r = await api('/v2/_zot/ext/search?query=' + encodeURIComponent(query));
    if (r.status === 404 || r.status === 405 || r.status === 501) {
      searchOff = true;
      throw new NoSearch();
    }
    let j = null;
    try { j = await r.json(); } catch (e) { /* not JSON */ }
    if (!j || (!r.ok && r.status !== 422)) throw new HttpError(r.status, 'search');
    if (j.errors && j.errors.length) throw new QueryError(j.errors.map((e) => e.message).join('; '));
    return j.data || {};
  }

  // The first of several queries the server answers (a server may not know
  // every field Zot has: the next asks for fewer).
  async function gqlFirst(queries) {
    let err;
    for (const q of queries) {
      try {
        return await gql(q);
      } catch (e) {
        if (!(e instanceof QueryError)) throw e;
        err = e;
      }
    }
    throw err;
  }

  async function each(items, n, fn) {
    let i = 0;
    const worker = async () => {
      while (i < items.length) {
        const k = i++;
        await fn(items[k], k);
      }
    };
    await Promise.all(Array.from({length: Math.min(n, items.length)}, worker));
  }

  async function catalog() {
    let names = [];
    let next = '/v2/_catalog?n=1000';
    for (let pages = 0; next && pages < 20; pages++) {
      const r = await api(next);
      if (!r.ok) throw new HttpError(r.status, 'catalog');
      names = names.concat((await r.json()).repositories || []);
      const link = r.headers.get('Link');
      const m = link && link.match(/<([^>]+)>\s*;\s*rel="?next"?/);
      next = m && m[1].startsWith('/v2/_catalog') ? m[1] : null;
    }
    return names;
  }

  async function tagList(name) {
    const j = await getJSON('/v2/' + name + '/tags/list', name);
    return j.tags || [];
  }

  async function manifest(name, ref) {
    const r = await api('/v2/' + name + '/manifests/' + ref, {headers: {Accept: ACCEPT}});
    if (!r.ok) throw new HttpError(r.status, name + ':' + ref);
    const body = await r.arrayBuffer();
    const m = JSON.parse(new TextDecoder().decode(body));
    return {
      digest: r.headers.get('Docker-Content-Digest') || '',
      mediaType: m.mediaType || (r.headers.get('Content-Type') || '').split(';')[0],
      size: body.byteLength, m,
    };
  }

  function contentSize(m) {
    return (m.config ? m.config.size || 0 : 0) +
      (m.layers || []).reduce((a, l) => a + (l.size || 0), 0);
  }

  // A tag's manifests, platforms and sizes from the registry's API alone.
  async function imageInfo(name, tag) {
    const top = await manifest(name, encodeURIComponent(tag));
    const img = {tag, digest: top.digest, mediaType: top.mediaType, manifests: []};
    if (Array.isArray(top.m.manifests)) {
      const kids = top.m.manifests.filter((d) => !(d.platform && d.platform.os === 'unknown'));
      await each(kids, 4, async (d) => {
        const p = d.platform || {};
        const one = {digest: d.digest, os: p.os, arch: p.architecture, variant: p.variant, size: d.size};
        try {
          one.size = d.size + contentSize((await manifest(name, d.digest)).m);
        } catch (e) {
          if (e instanceof AuthNeeded) throw e;
        }
        img.manifests.push(one);
      });
      img.manifests.sort((a, b) => platform(a).localeCompare(platform(b)));
      img.size = top.size + img.manifests.reduce((a, x) => a + x.size, 0);
    } else {
      const one = {digest: top.digest, size: top.size + contentSize(top.m)};
      if (top.m.config && top.m.config.digest) {
        try {
          const c = await getJSON('/v2/' + name + '/blobs/' + top.m.config.digest, 'config');
          Object.assign(one, {os: c.os, arch: c.architecture, variant: c.variant});
        } catch (e) {
          if (e instanceof AuthNeeded) throw e;
        }
      }
      img.manifests.push(one);
      img.size = one.size;
    }
    return img;
  }

  // ---- who is logged in ----

  function loggedIn() {
    return sessionStorage.getItem(USER);
  }

  function updateWho() {
    const user = loggedIn();
    if (user) {
      who.replaceChildren(h('span', {class: 'muted'}, 'Signed in as ', h('strong', null, user)),
        h('button', {type: 'button', class: 'quiet', onclick: logout}, 'Log out'));
    } else if (authMode === 'basic' || saw401) {
      who.replaceChildren(h('a', {href: '/login?next=' + encodeURIComponent(here())}, 'Log in'));
    } else {
      who.replaceChildren();
    }
  }

  function here() {
    return location.pathname === '/login' ? '/home' : location.pathname + location.search;
  }

  function logout() {
    sessionStorage.removeItem(AUTH);
    sessionStorage.removeItem(USER);
    updateWho();
    announce('Logged out');
    route();
  }

  async function probeAuth() {
    try {
      // Sent without credentials, as Zot's UI does: Zot answers it anonymously.
      const r = await fetch('/v2/_zot/ext/mgmt', {cache: 'no-store'});
      if (r.ok) {
        const j = await r.json();
        const auth = (j.http && j.http.auth) || {};
        if (auth.htpasswd || auth.ldap) authMode = 'basic';
        else if (Object.keys(auth).length === 0) authMode = false;
        else authMode = 'other';
      }
    } catch (e) { /* no auth information: anonymous first */ }
    updateWho();
  }

  // ---- pages ----

  async function reposPage(my) {
    const params = new URLSearchParams(location.search);
    const state = {q: params.get('q') || '', os: params.get('os') || '', arch: params.get('arch') || ''};
    const q = h('input', {type: 'search', id: 'q', name: 'q', value: state.q, autocomplete: 'off',
      spellcheck: 'false', placeholder: 'Repository name'});
    const os = h('select', {id: 'os', name: 'os'});
    const arch = h('select', {id: 'arch', name: 'arch'});
    const count = h('p', {class: 'muted', id: 'count'}, 'Loading…');
    const list = h('ul', {class: 'cards', 'aria-label': 'Repositories'});
    const source = h('p', {class: 'muted'});
    show('Repositories', h('h1', {tabindex: '-1'}, 'Repositories'),
      h('form', {class: 'filters', role: 'search', 'aria-label': 'Repositories',
        onsubmit: (e) => e.preventDefault()},
      field('q', 'Search', q, 'grow'), field('os', 'OS', os), field('arch', 'Architecture', arch)),
      count, list, source);

    let repos = [];
    let mode = 'search';
    let total = 0;
    let platformsWanted = false;
    let queued = false;
    let loads = 0;

    function setOptions(select, values, current, anyLabel) {
      const want = [''].concat([...new Set(values.concat(current ? [current] : []))].sort());
      const have = [...select.options].map((o) => o.value);
      if (JSON.stringify(want) !== JSON.stringify(have)) {
        select.replaceChildren(...want.map((v) => h('option', {value: v}, v || anyLabel)));
      }
      select.value = current;
    }

    function matches(r) {
      if (mode === 'registry' && state.q && !r.name.toLowerCase().includes(state.q.toLowerCase())) return false;
      if (!state.os && !state.arch) return true;
      if (!r.platforms) return false;
      return r.platforms.some((p) => (!state.os || p.os === state.os) && (!state.arch || p.arch === state.arch));
    }

    function card(r) {
      const facts = [];
      if (r.tags) facts.push(r.tags.length + (r.tags.length === 1 ? ' tag' : ' tags'));
      else if (r.newest) facts.push('newest ' + r.newest);
      if (r.size != null) facts.push(bytes(r.size));
      if (r.downloads) facts.push(r.downloads + ' pulls');
      const plats = [...new Set((r.platforms || []).map(platform))];
      return h('li', {class: 'card'},
        h('h2', null, h('a', {href: repoPath(r.name)}, r.name)),
        r.description ? h('p', null, r.description) : null,
        h('p', {class: 'muted'}, facts.join(' · '), r.updated ? [facts.length ? ' · updated ' : 'updated ', when(r.updated)] : null),
        plats.length ? h('ul', {class: 'chips', 'aria-label': 'Platforms'}, plats.map((p) => h('li', null, p))) : null);
    }

    function render() {
      queued = false;
      if (my !== page) return;
      const all = repos.flatMap((r) => r.platforms || []);
      setOptions(os, COMMON_OS.concat(all.map((p) => p.os).filter(Boolean)), state.os, 'Any');
      setOptions(arch, COMMON_ARCH.concat(all.map((p) => p.arch).filter(Boolean)), state.arch, 'Any');
      const shown = repos.filter(matches);
      list.replaceChildren(...shown.map(card));
      let text = shown.length + (shown.length === 1 ? ' repository' : ' repositories');
      if (total > repos.length) text += ' (the first ' + repos.length + ' of ' + total + ')';
      if (mode === 'registry' && (state.os || state.arch) && repos.some((r) => !r.platforms)) {
        text += '; reading platforms…';
      }
      if (!shown.length) text = repos.length || state.q ? 'No repository matches.' : 'No repositories yet.';
      count.textContent = text;
    }

    function soon() {
      if (!queued) {
        queued = true;
        requestAnimationFrame(render);
      }
    }

    async function loadPlatforms() {
      if (platformsWanted || mode !== 'registry') return;
      platformsWanted = true;
      await each(repos, 4, async (r) => {
        if (my !== page) return;
        try {
          if (!r.tags) r.tags = await tagList(r.name);
          const tag = r.tags.includes('latest') ? 'latest' : r.tags[r.tags.length - 1];
          r.platforms = tag ? (await imageInfo(r.name, tag)).manifests : [];
        } catch (e) {
          if (e instanceof AuthNeeded) throw e;
          r.platforms = [];
        }
        soon();
      });
    }

    async function load() {
      const seq = ++loads;
      try {
        const d = await gql('{GlobalSearch(query:' + JSON.stringify(state.q) +
          ', requestedPage:{limit:500 offset:0 sortBy:ALPHABETIC_ASC}){Page{TotalCount ItemCount} ' +
          'Repos{Name LastUpdated Size Platforms{Os Arch} NewestImage{Tag Description} DownloadCount}}}');
        if (my !== page || seq !== loads) return;
        const g = d.GlobalSearch || {};
        repos = (g.Repos || []).map((r) => ({
          name: r.Name, updated: r.LastUpdated, size: r.Size, downloads: r.DownloadCount,
          platforms: (r.Platforms || []).map((p) => ({os: p.Os, arch: p.Arch})),
          newest: r.NewestImage && r.NewestImage.Tag,
          description: r.NewestImage && r.NewestImage.Description,
        })).sort((a, b) => a.name.localeCompare(b.name));
        total = (g.Page && g.Page.TotalCount) || repos.length;
        source.textContent = '';
        render();
        return;
      } catch (e) {
        if (e instanceof AuthNeeded) throw e;
        if (!(e instanceof NoSearch)) source.textContent = 'Search failed (' + e.message + '): listed from the catalog.';
      }
      if (my !== page || mode === 'registry') return render();
      mode = 'registry';
      if (searchOff) source.textContent = 'Search is off on this registry: listed from the catalog.';
      repos = (await catalog()).map((name) => ({name, tags: null, platforms: null}));
      total = repos.length;
      render();
      if (state.os || state.arch) loadPlatforms();
      each(repos.slice(0, 300), 4, async (r) => {
        if (my !== page || r.tags) return;
        try { r.tags = await tagList(r.name); } catch (e) { r.tags = null; }
        soon();
      }).catch(() => {});
    }

    function remember() {
      const p = new URLSearchParams();
      for (const k of ['q', 'os', 'arch']) if (state[k]) p.set(k, state[k]);
      const s = p.toString();
      history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
    }

    let typing = null;
    q.addEventListener('input', () => {
      clearTimeout(typing);
      typing = later(() => {
        state.q = q.value.trim();
        remember();
        if (mode === 'registry') render(); else run(my, load);
        announce(count.textContent);
      }, 250);
    });
    for (const [sel, key] of [[os, 'os'], [arch, 'arch']]) {
      sel.addEventListener('change', () => {
        state[key] = sel.value;
        remember();
        render();
        if (mode === 'registry') run(my, loadPlatforms);
        announce(count.textContent);
      });
    }
    await load();
  }

  async function repoInfo(name) {
    const s = JSON.stringify(name);
    const d = await gqlFirst([
      '{ExpandedRepoInfo(repo:' + s + '){Summary{Name LastUpdated Size Platforms{Os Arch} ' +
      'NewestImage{Tag Description} DownloadCount} Images{Tag Digest MediaType Size LastUpdated ' +
      'PushTimestamp LastPullTimestamp DownloadCount Manifests{Digest Platform{Os Arch} Size LastUpdated}}}}',
      // What Zot's own UI asks for (a server may know no more).
      '{ExpandedRepoInfo(repo:' + s + '){Summary{Name LastUpdated Size Platforms{Os Arch} ' +
      'NewestImage{Tag Description}} Images{Tag LastUpdated Manifests{Digest Platform{Os Arch} Size}}}}',
    ]);
    const info = d.ExpandedRepoInfo || {};
    const images = (info.Images || []).filter((i) => i && i.Tag).map((i) => completed({
      tag: i.Tag, digest: i.Digest, mediaType: i.MediaType, size: i.Size, updated: i.LastUpdated,
      pushed: i.PushTimestamp, pulled: i.LastPullTimestamp, downloads: i.DownloadCount,
      manifests: (i.Manifests || []).map((m) => ({
        digest: m.Digest, size: m.Size, os: m.Platform && m.Platform.Os, arch: m.Platform && m.Platform.Arch,
      })),
    }));
    function completed(img) { // what Zot's UI's fields leave out, from the manifests
      if (img.size == null) img.size = img.manifests.reduce((a, x) => a + Number(x.size || 0), 0);
      if (!img.digest && img.manifests.length === 1) img.digest = img.manifests[0].digest;
      return img;
    }
    const sum = info.Summary || {};
    return {images, description: sum.NewestImage && sum.NewestImage.Description};
  }

  function pullCommand(tool, name, tag) {
    const insecure = location.protocol === 'http:';
    const flag = !insecure ? '' : tool === 'podman' ? '--tls-verify=false ' : tool === 'nerdctl' ? '--insecure-registry ' : '';
    const ref = /^sha(256|512):/.test(tag) ? name + '@' + tag : name + ':' + tag;
    return tool + ' pull ' + flag + location.host + '/' + ref;
  }

  async function copyText(text, from) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      // Not a secure context (plain HTTP to another host): copy the selection.
      const range = document.createRange();
      range.selectNodeContents(from);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { return document.execCommand('copy'); } catch (e2) { return false; }
    }
  }

  async function repoPage(my, rest) {
    let name = rest, selected = null;
    const m = rest.match(/^(.*)\/tag\/([^/]+)$/);
    if (m) { name = m[1]; selected = decodeURIComponent(m[2]); }
    try { name = decodeURIComponent(name); } catch (e) { /* as typed */ }

    const desc = h('p', {class: 'muted'});
    const tool = localStorage.getItem(TOOL) || 'docker';
    const tools = h('fieldset', {class: 'choices'}, h('legend', null, 'Client'),
      ['docker', 'podman', 'nerdctl'].map((t) => h('label', null,
        h('input', {type: 'radio', name: 'tool', value: t, checked: t === tool}), t)));
    const tagSel = h('select', {id: 'pulltag'});
    const cmd = h('code', {id: 'pullcmd'});
    const copied = h('span', {class: 'sr-only', role: 'status'});
    const copyBtn = h('button', {type: 'button', id: 'copy'}, 'Copy');
    const body = h('tbody');
    const table = h('table', {class: 'rows'},
      h('caption', {class: 'sr-only'}, 'Tags of ' + name),
      h('thead', null, h('tr', null, ['Tag', 'Platforms', 'Size', 'Pushed', 'Last pulled'].map((t) =>
        h('th', {scope: 'col', class: t === 'Size' ? 'num' : null, id: 'th-' + t.split(' ')[0].toLowerCase()}, t)))),
      body);
    const more = h('p');
    const source = h('p', {class: 'muted'});
    const detail = h('div');
    show(name,
      h('nav', {'aria-label': 'Breadcrumb'}, h('a', {href: '/explore'}, 'Repositories'), ' / '),
      h('h1', {tabindex: '-1'}, name), desc,
      h('section', {'aria-labelledby': 'pull-h'}, h('h2', {id: 'pull-h'}, 'Pull'),
        h('div', {class: 'filters'}, tools, field('pulltag', 'Tag', tagSel)),
        h('div', {class: 'cmd'}, h('div', {class: 'cmdtext'}, cmd), copyBtn, copied),
        location.protocol === 'http:' ? h('p', {class: 'muted'},
          'Plain HTTP: Docker needs this address in its insecure-registries (127.0.0.0/8 is allowed as is).') : null),
      detail,
      h('section', {'aria-labelledby': 'tags-h'}, h('h2', {id: 'tags-h'}, 'Tags'),
        h('div', {class: 'table-wrap'}, table), more, source));

    let images = [];
    let loadSome = null; // without search: reads tags' manifests

    function currentTool() {
      const r = tools.querySelector('input:checked');
      return r ? r.value : 'docker';
    }

    function updateCmd() {
      cmd.textContent = tagSel.value ? pullCommand(currentTool(), name, tagSel.value) : '';
      copyBtn.disabled = !tagSel.value;
      for (const tr of body.rows) tr.classList.toggle('current', tr.dataset.tag === tagSel.value);
      renderDetail();
    }

    function renderDetail() {
      const img = images.find((i) => i.tag === tagSel.value);
      if (!img) return detail.replaceChildren();
      if (!img.manifests) {
        return detail.replaceChildren(h('p', {class: 'muted'}, img.error || 'Reading the manifests of ' + img.tag + '…'));
      }
      detail.replaceChildren(h('section', {'aria-labelledby': 'tag-h'},
        h('h2', {id: 'tag-h'}, 'Tag ' + img.tag),
        h('dl', {class: 'kv'},
          kv('Digest', h('code', null, img.digest || '—')), kv('Media type', img.mediaType || '—'),
          kv('Size', bytes(img.size)), img.pushed ? kv('Pushed', when(img.pushed)) : null,
          kv('Updated', when(img.updated)),
          kv('Last pulled', when(img.pulled)), img.downloads != null ? kv('Pulls', String(img.downloads)) : null),
        h('ul', null, img.manifests.map((x) => h('li', null, platform(x), ' · ', bytes(x.size), ' · ',
          h('code', null, x.digest || '—'))))));
    }

    function row(img) {
      const link = h('a', {href: repoPath(name, img.tag)}, img.tag);
      const plats = img.manifests ? h('ul', null, img.manifests.map((x) => h('li', null, platform(x), ' ',
        h('span', {class: 'muted'}, bytes(x.size)), ' ', h('code', {title: x.digest || ''}, short(x.digest)))))
        : h('span', {class: 'muted'}, img.error || 'Loading…');
      return h('tr', {'data-tag': img.tag, class: img.tag === tagSel.value ? 'current' : null},
        h('th', {scope: 'row', 'data-label': 'Tag'}, link,
          img.digest ? h('div', null, h('code', {class: 'muted', title: img.digest}, short(img.digest))) : null),
        h('td', {'data-label': 'Platforms'}, plats),
        h('td', {'data-label': 'Size', class: 'num'}, img.size != null ? bytes(img.size) : '—'),
        h('td', {'data-label': pushedLabel()}, when(img.pushed || img.updated)),
        h('td', {'data-label': 'Last pulled'}, when(img.pulled)));
    }

    // Zot's PushTimestamp when the server has it, else LastUpdated (the
    // image's own time: its config's or its newest layer's).
    function pushedLabel() {
      return images.some((i) => i.pushed) ? 'Pushed' : 'Updated';
    }

    function render() {
      if (my !== page) return;
      table.querySelector('#th-pushed').textContent = pushedLabel();
      const keep = tagSel.value || selected;
      tagSel.replaceChildren(...images.map((i) => h('option', {value: i.tag}, i.tag)));
      const pick = images.find((i) => i.tag === keep) || images.find((i) => i.tag === 'latest') || images[0];
      tagSel.value = pick ? pick.tag : '';
      body.replaceChildren(...images.map(row));
      updateCmd();
    }

    tools.addEventListener('change', () => {
      localStorage.setItem(TOOL, currentTool());
      updateCmd();
    });
    tagSel.addEventListener('change', () => {
      selected = tagSel.value;
      history.replaceState(null, '', repoPath(name, selected));
      updateCmd();
      const img = images.find((i) => i.tag === selected);
      if (img && !img.manifests && !img.error && loadSome) run(my, () => loadSome([img]));
    });
    copyBtn.addEventListener('click', async () => {
      const ok = await copyText(cmd.textContent, cmd);
      copyBtn.textContent = ok ? 'Copied' : 'Press Ctrl+C';
      copied.textContent = ok ? 'Pull command copied' : 'Copy failed: the command is selected';
      later(() => { copyBtn.textContent = 'Copy'; copied.textContent = ''; }, 2000);
    });

    let info = null;
    try {
      info = await repoInfo(name);
      if (!info.images.length) info = null; // not indexed (yet): ask the registry
    } catch (e) {
      if (e instanceof AuthNeeded) throw e;
      if (!(e instanceof NoSearch)) source.textContent = 'Search failed (' + e.message + ').';
    }
    if (my !== page) return;
    if (info) {
      desc.textContent = info.description || '';
      images = info.images.sort((a, b) => String(b.pushed || b.updated || '').localeCompare(String(a.pushed || a.updated || '')) ||
        a.tag.localeCompare(b.tag));
      render();
      if (selected) scrollToTag();
      return;
    }
    // The registry's API: the tags, then each tag's manifests.
    let tags;
    try {
      tags = await tagList(name);
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) {
        show(name, h('h1', {tabindex: '-1'}, name), notice('There is no repository called ' + name + ' here.', 'error'),
          h('p', null, h('a', {href: '/explore'}, 'All repositories')));
        return;
      }
      throw e;
    }
    if (my !== page) return;
    source.textContent = (searchOff ? 'Search is off on this registry: ' : '') + 'read from the registry’s API.';
    images = tags.slice().reverse().map((tag) => ({tag, manifests: null}));
    render();
    loadSome = async (list) => {
      await each(list, 4, async (img) => {
        try {
          Object.assign(img, await imageInfo(name, img.tag));
        } catch (e) {
          if (e instanceof AuthNeeded) throw e;
          img.error = e.message;
          img.manifests = null;
        }
        if (my === page) {
          const i = images.indexOf(img);
          if (body.rows[i]) body.rows[i].replaceWith(row(img));
          renderDetail();
        }
      });
    };
    const first = images.filter((i) => i.tag === selected).concat(images.filter((i) => i.tag !== selected)
      .slice(0, DETAILS_AT_ONCE));
    const others = images.filter((i) => !first.includes(i));
    if (others.length) {
      more.replaceChildren(h('button', {type: 'button', class: 'quiet', onclick: () => {
        more.replaceChildren();
        run(my, () => loadSome(others));
      }}, 'Read the other ' + others.length + ' tags’ manifests'));
    }
    if (selected) scrollToTag();
    await loadSome(first);

    function scrollToTag() {
      const tr = [...body.rows].find((r) => r.dataset.tag === selected);
      if (tr) tr.scrollIntoView({block: 'center'});
    }
  }

  function kv(label, value) {
    return [h('dt', null, label), h('dd', null, value)];
  }

  function stat(label, value, small) {
    return h('div', {class: 'stat'}, h('dt', null, label), h('dd', null, value, small ? h('small', null, small) : null));
  }

  async function cachePage(my) {
    const box = h('div', null, h('p', {class: 'muted'}, 'Loading…'));
    show('Cache', h('h1', {tabindex: '-1'}, 'Cache'),
      h('p', {class: 'muted'}, 'What the pull-through cache is doing, updated every second.'), box);
    const tick = async () => {
      if (my !== page) return;
      let delay = 1000;
      try {
        const r = await api('/v2/_wharf/status');
        if (r.status === 404) {
          box.replaceChildren(notice('The cache status is not available on this server (it has no /v2/_wharf/status).'));
          delay = 10000;
        } else if (!r.ok) {
          box.replaceChildren(notice('The cache status answered HTTP ' + r.status + '.', 'error'));
          delay = 5000;
        } else {
          const j = await r.json();
          if (my === page) box.replaceChildren(...statusView(j));
        }
      } catch (e) {
        if (e instanceof AuthNeeded) return run(my, () => { throw e; });
        box.replaceChildren(notice('The cache status cannot be read: ' + e.message, 'error'));
        delay = 5000;
      }
      if (document.hidden) delay = Math.max(delay, 5000);
      if (my === page) later(tick, delay);
    };
    await tick();
  }

  function statusView(j) {
    const c = j.cache || {};
    const hits = c.hits || {}, misses = c.misses || {};
    const hm = hits.manifest || 0, hb = hits.blob || 0, mm = misses.manifest || 0, mb = misses.blob || 0;
    const used = c.usage_bytes, budget = c.budget_bytes || 0;
    let disk;
    if (used == null || used < 0) {
      disk = stat('Disk used', 'counting…', budget > 0 ? 'budget ' + bytes(budget) : 'no budget set');
    } else if (budget > 0) {
      disk = stat('Disk used', [bytes(used), h('meter', {min: 0, max: budget, value: Math.min(used, budget),
        high: budget * 0.9, optimum: 0, 'aria-label': 'Disk used against the budget'})],
      percent(used, budget) + ' of the ' + bytes(budget) + ' budget');
    } else {
      disk = stat('Disk used', bytes(used), 'no budget set');
    }
    const gc = j.gc || {};
    const out = [
      h('dl', {class: 'stats', 'aria-label': 'Summary'},
        stat('Hit ratio', percent(hm + hb, hm + hb + mm + mb),
          'manifests ' + percent(hm, hm + mm) + ' · blobs ' + percent(hb, hb + mb)),
        stat('Served from the cache', bytes(c.bytes_from_cache), bytes(c.bytes_from_upstream) + ' fetched from upstreams' +
          (c.bytes_from_peers ? ' · ' + bytes(c.bytes_from_peers) + ' from peers' : '')),
        disk,
        stat('Free on the disk', bytes(c.fs_free_bytes), c.min_free_bytes > 0 ? 'keeps ' + bytes(c.min_free_bytes) + ' free' : null),
        stat('Evictions', String(c.evictions || 0)),
        stat('Up for', duration(j.uptime_s), j.version ? 'Wharf ' + j.version : null)),
    ];
    const ups = j.upstreams || [];
    out.push(h('h2', null, 'Upstream registries'));
    out.push(ups.length ? h('div', {class: 'table-wrap'}, h('table', {class: 'rows'},
      h('thead', null, h('tr', null, ['Prefix', 'Address', 'State', 'Requests', 'Errors'].map((t) =>
        h('th', {scope: 'col', class: /Req|Err/.test(t) ? 'num' : null}, t)))),
      h('tbody', null, ups.map((u) => h('tr', null,
        h('th', {scope: 'row', 'data-label': 'Prefix'}, '/' + String(u.prefix || '').replace(/^\//, '')),
        h('td', {'data-label': 'Address'}, h('code', null, u.url || '')),
        h('td', {'data-label': 'State'}, u.up ? h('span', {class: 'up'}, '● up') : h('span', {class: 'down'}, '✕ down')),
        h('td', {'data-label': 'Requests', class: 'num'}, String(u.requests || 0)),
        h('td', {'data-label': 'Errors', class: 'num'}, String(u.errors || 0)))))))
      : h('p', {class: 'muted'}, 'No upstream registry is configured: nothing is pulled through.'));
    const fetches = j.fetches || [];
    out.push(h('h2', null, 'Fetches in flight'));
    out.push(fetches.length ? h('div', {class: 'table-wrap'}, h('table', {class: 'rows'},
      h('thead', null, h('tr', null, ['Repository', 'Blob', 'Progress', 'Clients', 'Rate'].map((t) =>
        h('th', {scope: 'col', class: /Clients|Rate/.test(t) ? 'num' : null}, t)))),
      h('tbody', null, fetches.map((f) => {
        const known = f.total > 0;
        const label = bytes(f.bytes) + (known ? ' of ' + bytes(f.total) + ' (' + percent(f.bytes, f.total) + ')' : '');
        return h('tr', null,
          h('th', {scope: 'row', 'data-label': 'Repository'}, f.repo || ''),
          h('td', {'data-label': 'Blob'}, h('code', {title: f.digest || ''}, short(f.digest))),
          h('td', {'data-label': 'Progress'}, h('progress', known ? {max: f.total, value: Math.min(f.bytes, f.total),
            'aria-label': label} : {'aria-label': label}), h('div', {class: 'muted'}, label)),
          h('td', {'data-label': 'Clients', class: 'num'}, String(f.clients || 0)),
          h('td', {'data-label': 'Rate', class: 'num'}, f.rate_bps ? bytes(f.rate_bps) + '/s' : '—'));
      }))))
      : h('p', {class: 'muted'}, 'None right now.'));
    out.push(h('h2', null, 'Garbage collection'));
    out.push(h('dl', {class: 'stats', 'aria-label': 'Garbage collection'},
      stat('Sweeps', String(gc.sweeps || 0), gc.sweeping ? 'sweeping now' : null),
      stat('Last sweep', gc.last_sweep_ms > 1e12 ? when(gc.last_sweep_ms) : '—'),
      stat('Removed', String((gc.manifests_removed || 0) + (gc.blobs_removed || 0)),
        (gc.manifests_removed || 0) + ' manifests · ' + (gc.blobs_removed || 0) + ' blobs')));
    return out;
  }

  function loginPage(my) {
    const params = new URLSearchParams(location.search);
    let next = params.get('next') || '/home';
    if (!next.startsWith('/') || next.startsWith('//') || next.startsWith('/login')) next = '/home';
    const user = h('input', {type: 'text', id: 'user', name: 'username', autocomplete: 'username', required: true,
      autocapitalize: 'none', spellcheck: 'false'});
    const pass = h('input', {type: 'password', id: 'password', name: 'password', autocomplete: 'current-password',
      required: true});
    const err = h('p', {role: 'alert', class: 'error-text'});
    const submit = h('button', {type: 'submit'}, 'Log in');
    const form = h('form', {class: 'login', 'aria-labelledby': 'login-h'},
      field('user', 'User name', user), field('password', 'Password', pass), err, submit);
    show('Log in', h('h1', {id: 'login-h', tabindex: '-1'}, 'Log in'),
      authMode === false ? notice('This registry asks for no credentials.') : null,
      authMode === 'other' ? notice('This registry uses a login these pages do not offer; a user name and password may still work.') : null,
      h('p', {class: 'muted'}, 'Your credentials stay in this browser tab until you log out or close it.'),
      form);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.textContent = '';
      submit.disabled = true;
      const basic = b64(user.value + ':' + pass.value);
      try {
        const r = await api('/v2/', {basic});
        if (r.ok) {
          sessionStorage.setItem(AUTH, basic);
          sessionStorage.setItem(USER, user.value);
          updateWho();
          announce('Logged in as ' + user.value);
          go(next, true);
          return;
        }
        err.textContent = r.status === 401 ? 'The user name or password is not right.'
          : 'The registry answered HTTP ' + r.status + '.';
      } catch (e2) {
        err.textContent = 'The registry cannot be reached: ' + e2.message;
      }
      submit.disabled = false;
      pass.focus();
    });
    user.focus();
  }

  function notFound(text) {
    show('Not found', h('h1', {tabindex: '-1'}, 'Not found'),
      h('p', null, text || 'There is no page at this address.'),
      h('p', null, h('a', {href: '/explore'}, 'All repositories')));
  }

  // ---- routing ----

  function run(my, fn) {
    return Promise.resolve().then(fn).catch((e) => {
      if (my !== page) return;
      if (e instanceof AuthNeeded) {
        updateWho();
        if (loggedIn()) { // the credentials stopped working
          sessionStorage.removeItem(AUTH);
          sessionStorage.removeItem(USER);
          updateWho();
        }
        go('/login?next=' + encodeURIComponent(here()), true);
        return;
      }
      main.append(notice('Something went wrong: ' + e.message, 'error'));
    });
  }

  function go(path, replace) {
    history[replace ? 'replaceState' : 'pushState'](null, '', path);
    moved = true;
    route();
  }

  function route() {
    timers.forEach(clearTimeout);
    timers = [];
    const my = ++page;
    const p = location.pathname;
    for (const a of document.querySelectorAll('.bar nav a')) {
      const mine = a.dataset.nav === 'cache' ? p === '/cache' : p !== '/cache' && p !== '/login';
      if (mine) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    updateWho();
    if (p === '/' || p === '/home' || p === '/explore') return run(my, () => reposPage(my));
    if (p.startsWith('/image/') && p.length > 7) return run(my, () => repoPage(my, p.slice(7)));
    if (p === '/cache') return run(my, () => cachePage(my));
    if (p === '/login') return run(my, () => loginPage(my));
    if (p.startsWith('/user/')) return notFound('Wharf has no user settings or API keys: log in with your user name and password.');
    return notFound();
  }

  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download') || a.getAttribute('href').startsWith('#')) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || /^\/(v2|assets)\//.test(url.pathname)) return;
    e.preventDefault();
    go(url.pathname + url.search);
  });
  window.addEventListener('popstate', () => { moved = true; route(); });
  probeAuth();
  route();
})();

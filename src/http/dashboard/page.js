/* The convergence dashboard (served by every node at /dashboard/page.js). It reads each node's
 * GET /dashboard/events stream (server-sent events over fetch, so a bearer token can be sent),
 * samples the latest frame of every node twice a second and draws three uPlot charts: the
 * followed key's usage as each node sees it, checks per second, and replication lag.
 * `window.dashboard` exposes the sampled data (for tests and the console). */
/* global uPlot */
(function () {
  'use strict';
  const params = new URLSearchParams(location.search);
  const key = params.get('key') || '';
  // The token stays in this tab's session storage, never in the URL (URLs end up in logs and history).
  const token = window.sessionStorage.getItem('regionlimit-token') || '';
  const nodeUrls = (params.get('nodes') || location.origin).split(',').map((s) => s.trim().replace(/\/+$/, '')).filter(Boolean);
  const form = document.getElementById('watch');
  form.key.value = key;
  form.nodes.value = params.get('nodes') || '';
  form.token.value = token;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (form.key.value) q.set('key', form.key.value);
    if (form.nodes.value) q.set('nodes', form.nodes.value);
    if (form.token.value) window.sessionStorage.setItem('regionlimit-token', form.token.value);
    else window.sessionStorage.removeItem('regionlimit-token');
    location.search = q.toString();
  });
  if (key) document.getElementById('usage-title').textContent = `Usage of "${key}", as each node sees it`;

  const KEEP = 600; // points: 5 minutes at 2 per second
  const TICK_MS = 500;
  /** url -> { frame, prev (for rates), online } */
  const sources = new Map();
  const state = { x: [], series: { usage: new Map(), checks: new Map(), lag: new Map() }, frames: sources, errors: [] };
  window.dashboard = {
    state,
    /** Per node id: the usage values sampled for the key (null where the node was not heard). */
    usage() {
      return Object.fromEntries([...state.series.usage].map(([name, v]) => [name, v.slice()]));
    },
    /** Nodes heard from, by id. */
    nodes() {
      return [...sources.values()].filter((s) => s.frame).map((s) => s.frame.node);
    },
  };

  function push(group, name, value) {
    let arr = state.series[group].get(name);
    if (!arr) {
      arr = new Array(state.x.length - 1).fill(null);
      state.series[group].set(name, arr);
    }
    arr.push(value);
  }

  async function follow(url) {
    const s = { url, frame: null, rate: { allowed: 0, denied: 0 }, last: null, online: false };
    sources.set(url, s);
    for (;;) {
      try {
        const res = await fetch(`${url}/dashboard/events${key ? `?key=${encodeURIComponent(key)}` : ''}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
        if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status}`);
        s.online = true;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const event = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = event.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
            if (data) receive(s, JSON.parse(data));
          }
        }
      } catch (err) {
        state.errors.push(String(err));
      }
      s.online = false;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  function receive(s, f) {
    if (s.last && f.checks && s.last.checks && f.at > s.last.at) {
      const dt = (f.at - s.last.at) / 1000;
      s.rate = { allowed: (f.checks.allowed - s.last.checks.allowed) / dt, denied: (f.checks.denied - s.last.checks.denied) / dt };
    }
    s.last = f;
    s.frame = f;
  }

  const charts = {};
  function chart(id, group, unit) {
    const names = [...state.series[group].keys()];
    const have = charts[id];
    const data = [state.x, ...names.map((n) => state.series[group].get(n))];
    if (have && have.names.join('|') === names.join('|')) {
      have.u.setData(data);
      return;
    }
    if (have) have.u.destroy();
    const el = document.getElementById(id);
    const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
    const u = new uPlot(
      {
        width: Math.max(600, el.clientWidth || 600),
        height: 260,
        scales: { x: { time: true } },
        axes: [{}, { label: unit }],
        series: [{}, ...names.map((n, i) => ({ label: n, stroke: palette[i % palette.length], width: 2, dash: n.endsWith(' denied') ? [6, 4] : undefined, spanGaps: false }))],
      },
      data,
      el,
    );
    charts[id] = { u, names };
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function tick() {
    state.x.push(Date.now() / 1000);
    const live = [...sources.values()];
    const seen = { usage: new Set(), checks: new Set(), lag: new Set() };
    for (const s of live) {
      const f = s.online ? s.frame : null;
      if (!f) continue;
      const u = f.usage && f.usage.limits && f.usage.limits[0];
      if (key) {
        push('usage', f.node, u ? u.usage : 0);
        seen.usage.add(f.node);
      }
      push('checks', `${f.node} allowed`, s.rate.allowed);
      push('checks', `${f.node} denied`, s.rate.denied);
      seen.checks.add(`${f.node} allowed`).add(`${f.node} denied`);
      for (const p of f.peers) {
        const name = `${f.node} ← ${p.node}`;
        push('lag', name, p.lagP99Ms);
        seen.lag.add(name);
      }
    }
    for (const g of Object.keys(seen)) {
      for (const [name, arr] of state.series[g]) if (!seen[g].has(name)) arr.push(null);
    }
    if (state.x.length > KEEP) {
      state.x.shift();
      for (const g of Object.keys(state.series)) for (const arr of state.series[g].values()) arr.shift();
    }
    if (key) chart('chart-usage', 'usage', 'usage');
    chart('chart-checks', 'checks', 'checks/s');
    chart('chart-lag', 'lag', 'ms');
    render(live);
  }

  function render(live) {
    const nodes = document.querySelector('#nodes tbody');
    const over = document.querySelector('#overshoot tbody');
    nodes.textContent = '';
    over.textContent = '';
    for (const s of live) {
      const f = s.frame;
      const tr = document.createElement('tr');
      if (!f || !s.online) {
        cell(tr, f ? f.node : s.url, 'offline');
        cell(tr, f ? f.region : '');
        cell(tr, 'unreachable', 'offline');
        nodes.appendChild(tr);
        continue;
      }
      cell(tr, f.node);
      cell(tr, f.region);
      cell(tr, f.degraded ? `degraded: ${f.reasons.join('; ')}` : f.ready ? 'ok' : 'not ready', f.degraded || !f.ready ? 'degraded' : 'ok');
      cell(tr, s.rate.allowed.toFixed(1));
      cell(tr, s.rate.denied.toFixed(1));
      cell(tr, f.peers.map((p) => `${p.node} ${p.lagP99Ms} ms, ${(p.stalenessMs / 1000).toFixed(1)} s`).join(' · ') || '—');
      nodes.appendChild(tr);
      for (const o of f.overshoot) {
        const r = document.createElement('tr');
        cell(r, f.node);
        cell(r, o.policy);
        cell(r, String(o.limit));
        cell(r, String(o.bound));
        cell(r, String(o.observed), o.observed > o.bound ? 'degraded' : '');
        over.appendChild(r);
      }
    }
  }

  for (const url of nodeUrls) void follow(url);
  setInterval(tick, TICK_MS);
})();

// The spend dashboard: fetches /v1/usage/series with the admin key typed in, pivots the rows per course,
// key and backend, and draws them with uPlot. All times are UTC buckets, as the ledger stores them.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const NONE = "(none)";
  const KEY = "leanrank-admin-key";
  const usd = (v) => "$" + v.toFixed(4);
  const count = (v) => Math.round(v).toLocaleString("en-US");
  const ms = (v) => v.toFixed(1) + " ms";
  const percent = (v) => v.toFixed(1) + "%";
  const rate = (hits, docs) => (docs > 0 ? percent((100 * hits) / docs) : "–");
  let charts = [];

  function status(text, failed) {
    $("status").textContent = text;
    $("status").className = failed ? "error" : "";
    document.body.dataset.state = failed ? "error" : "loading";
  }

  // "YYYY-MM-DD" or "YYYY-MM-DDTHH:00" (UTC) -> seconds since the epoch.
  function bucketTime(label) {
    return Date.parse(label.length === 10 ? label + "T00:00:00Z" : label + ":00Z") / 1000;
  }

  // Every bucket from the period's start up to now (or to the last bucket with calls), so gaps show as 0.
  function timeAxis(data) {
    const step = data.bucket === "hour" ? 3600 : 86400;
    const start = Date.parse(data.start) / 1000;
    const end = Date.parse(data.end) / 1000;
    let last = Math.min(end, Math.ceil(Date.now() / 1000 / step) * step);
    for (const row of data.rows) last = Math.max(last, bucketTime(row.bucket) + step);
    last = Math.max(last, start + step);
    const xs = [];
    for (let t = start; t < last; t += step) xs.push(t);
    return { xs, index: (row) => Math.round((bucketTime(row.bucket) - start) / step) };
  }

  // name -> per-bucket sums of value(row), for the rows that name(row) assigns.
  function pivot(rows, axis, name, value) {
    const out = new Map();
    for (const row of rows) {
      const key = name(row);
      if (key === undefined) continue;
      if (!out.has(key)) out.set(key, new Array(axis.xs.length).fill(0));
      out.get(key)[axis.index(row)] += value(row);
    }
    return new Map([...out.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
  }

  function lines(map) {
    return [...map.entries()].map(([label, values], i) => ({ label, values, color: PALETTE[i % PALETTE.length] }));
  }

  function draw(id, xs, series, fmt) {
    const el = $(id);
    el.textContent = "";
    if (!series.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "no data";
      el.append(p);
      return;
    }
    const opts = {
      width: Math.max(320, el.clientWidth),
      height: 240,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: { x: { time: true } },
      axes: [{}, { size: 80, values: (u, ticks) => ticks.map(fmt) }],
      series: [
        { label: "UTC" },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          dash: s.dash,
          value: (u, v) => (v == null ? "–" : fmt(v)),
        })),
      ],
    };
    charts.push(new uPlot(opts, [xs, ...series.map((s) => s.values)], el));
  }

  // Spend of one budget's scope per bucket, summed from the start of each of the cap's days or months.
  function burn(rows, axis, budget) {
    const spent = pivot(rows, axis, (r) => (r[budget.scope] === budget.name ? "x" : undefined), (r) => r.cost_usd);
    const values = spent.get("x") || new Array(axis.xs.length).fill(0);
    const width = budget.period === "day" ? 10 : 7; // ISO date prefix naming the cap's period
    let total = 0;
    let current = null;
    return values.map((v, i) => {
      const label = new Date(axis.xs[i] * 1000).toISOString().slice(0, width);
      if (label !== current) {
        current = label;
        total = 0;
      }
      total += v;
      return total;
    });
  }

  function fillTable(id, cells) {
    const body = $(id).tBodies[0];
    body.textContent = "";
    for (const row of cells) {
      const tr = body.insertRow();
      for (const cell of row) {
        const td = tr.insertCell();
        if (cell instanceof Node) td.append(cell);
        else td.textContent = cell;
      }
    }
  }

  function groupTable(id, rows, name) {
    const groups = new Map();
    for (const r of rows) {
      const key = name(r) ?? NONE;
      const g = groups.get(key) || { calls: 0, cost: 0, savings: 0, hits: 0, docs: 0 };
      g.calls += r.calls;
      g.cost += r.cost_usd;
      g.savings += r.savings_usd;
      g.hits += r.cache_hits;
      g.docs += r.documents;
      groups.set(key, g);
    }
    const sorted = [...groups.entries()].sort((a, b) => b[1].cost - a[1].cost || (a[0] < b[0] ? -1 : 1));
    fillTable(id, sorted.map(([k, g]) => [k, count(g.calls), usd(g.cost), usd(g.savings), rate(g.hits, g.docs)]));
  }

  function render(data) {
    for (const chart of charts) chart.destroy();
    charts = [];
    $("board").hidden = false;
    const rows = data.rows;
    const sum = (f) => rows.reduce((acc, r) => acc + f(r), 0);
    const docs = sum((r) => r.documents);
    const hits = sum((r) => r.cache_hits);
    $("total-cost").textContent = usd(sum((r) => r.cost_usd));
    $("total-savings").textContent = usd(sum((r) => r.savings_usd));
    $("total-calls").textContent = count(sum((r) => r.calls));
    $("total-unpriced").textContent = count(sum((r) => r.unpriced));
    $("total-hit-rate").textContent = rate(hits, docs);
    $("total-received").textContent = count(sum((r) => r.documents_received));
    $("total-sent").textContent = count(docs - hits);
    $("total-tokens").textContent = count(sum((r) => r.query_tokens + r.document_tokens));

    const axis = timeAxis(data);
    const xs = axis.xs;
    const course = (r) => r.course ?? NONE;
    const tenant = (r) => r.tenant ?? NONE;
    draw("chart-spend-course", xs, lines(pivot(rows, axis, course, (r) => r.cost_usd)), usd);
    draw("chart-spend-key", xs, lines(pivot(rows, axis, tenant, (r) => r.cost_usd)), usd);
    draw("chart-savings", xs, lines(pivot(rows, axis, course, (r) => r.savings_usd)), usd);

    const budgetLines = [];
    data.budgets.forEach((b, i) => {
      const color = PALETTE[i % PALETTE.length];
      const label = `${b.scope} ${b.name}/${b.period}`;
      budgetLines.push({ label, values: burn(rows, axis, b), color });
      for (const [cap, value] of [["soft", b.soft_usd], ["hard", b.hard_usd]]) {
        if (value != null) budgetLines.push({ label: `${label} ${cap} cap`, values: xs.map(() => value), color, dash: cap === "hard" ? [8, 4] : [2, 4] });
      }
    });
    draw("chart-budget", xs, budgetLines, usd);

    const total = (f) => pivot(rows, axis, () => "all", f).get("all") || xs.map(() => 0);
    const docsPer = total((r) => r.documents);
    const hitsPer = total((r) => r.cache_hits);
    const hitRate = docsPer.map((d, i) => (d > 0 ? (100 * hitsPer[i]) / d : null));
    draw("chart-cache", xs, rows.length ? [{ label: "cache hit rate", values: hitRate, color: PALETTE[2] }] : [], percent);
    const documents = [
      { label: "received", values: total((r) => r.documents_received), color: PALETTE[0] },
      { label: "scored", values: docsPer, color: PALETTE[2] },
      { label: "sent to a backend", values: docsPer.map((d, i) => d - hitsPer[i]), color: PALETTE[1] },
    ];
    draw("chart-documents", xs, rows.length ? documents : [], count);
    const tokens = [
      { label: "query tokens", values: total((r) => r.query_tokens), color: PALETTE[4] },
      { label: "document tokens", values: total((r) => r.document_tokens), color: PALETTE[3] },
    ];
    draw("chart-tokens", xs, rows.length ? tokens : [], count);
    const latencySum = pivot(rows, axis, (r) => r.backend, (r) => r.latency_ms_sum);
    const latencyCalls = pivot(rows, axis, (r) => r.backend, (r) => r.backend_calls);
    const latency = new Map(
      [...latencySum.entries()].map(([b, sums]) => [b, sums.map((s, i) => (latencyCalls.get(b)[i] > 0 ? s / latencyCalls.get(b)[i] : null))]),
    );
    draw("chart-latency", xs, lines(latency), ms);

    fillTable(
      "budgets",
      data.budgets.map((b) => {
        const meter = document.createElement("meter");
        const cap = b.hard_usd ?? b.soft_usd;
        meter.max = cap > 0 ? cap : 1;
        meter.value = b.spent_usd;
        if (b.soft_usd != null) meter.high = b.soft_usd;
        const fmt = (v) => (v == null ? "–" : usd(v));
        return [`${b.scope} ${b.name}/${b.period}`, usd(b.spent_usd), fmt(b.soft_usd), fmt(b.hard_usd), meter];
      }),
    );
    groupTable("by-course", rows, (r) => r.course);
    groupTable("by-key", rows, (r) => r.tenant);
    status(`${data.period} (${data.bucket === "hour" ? "hourly" : "daily"}, UTC): ${count(sum((r) => r.calls))} calls.`, false);
    document.body.dataset.state = "ready";
  }

  async function load(event) {
    if (event) event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    const params = new URLSearchParams({ bucket: $("bucket").value });
    const period = $("period").value.trim();
    if (period) params.set("period", period);
    status("Loading…", false);
    let response;
    let body = null;
    try {
      response = await fetch("/v1/usage/series?" + params, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
      body = await response.json().catch(() => null);
    } catch (error) {
      status("The service did not answer: " + error.message, true);
      return;
    }
    if (!response.ok) {
      $("board").hidden = true;
      if (response.status === 401 || response.status === 403) sessionStorage.removeItem(KEY);
      status(`Refused (${response.status}): ${(body && body.error) || response.statusText}`, true);
      return;
    }
    render(body);
  }

  $("controls").addEventListener("submit", load);
  const saved = sessionStorage.getItem(KEY);
  if (saved) {
    $("key").value = saved;
    load(null);
  } else {
    document.body.dataset.state = "idle";
  }
})();

// Mizzen's dashboard: a single page over pilot's JSON API, hand-written, no build step.
// Pages: #/graph (the live service graph), #/services/NS/NAME, #/proxies.
// Each page re-renders every interval and then fires `mizzen:rendered` on document,
// which is what a test (or a screen reader's live region) can wait for.

const SVG = "http://www.w3.org/2000/svg";
const main = document.getElementById("main");
const status = document.getElementById("status");
let interval = 5000;
let timer = null;
let renders = 0;

const SVG_TAGS = new Set(["svg", "g", "path", "circle", "polygon", "polyline", "line", "text",
  "rect", "title", "desc", "marker", "defs"]);

/** An element with attributes and children; SVG's in the SVG namespace (and an `a`
 * given `svg: true`). */
function el(tag, attrs = {}, ...children) {
  const svg = SVG_TAGS.has(tag) || attrs.svg;
  const node = svg ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

function rate(x) {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function ms(x) {
  return x === null || x === undefined ? "–" : `${x >= 100 ? x.toFixed(0) : x.toFixed(1)} ms`;
}

function rendered(view) {
  renders += 1;
  if (view !== "graph") status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  document.dispatchEvent(new CustomEvent("mizzen:rendered", { detail: { view, renders } }));
}

function showStatus(answer) {
  status.replaceChildren();
  if (answer && answer.at) {
    const when = new Date(answer.at).toLocaleTimeString();
    status.append(`Updated ${when} · ${answer.source} · rates over ${answer.window_secs}s`);
  }
  if (answer && answer.problems && answer.problems.length) {
    status.append(" · ", el("span", { class: "problem", title: answer.problems.join("\n") },
      `${answer.problems.length} metrics endpoint(s) unreadable`));
  }
}

// ---------------------------------------------------------------- the graph

/** Columns by longest path from the callers; nodes without edges with the services. */
function layout(nodes, edges, width, height) {
  const rank = new Map(nodes.map((n) => [n.id, 0]));
  for (let pass = 0; pass < nodes.length; pass++) {
    let changed = false;
    for (const e of edges) {
      if (e.source === e.target) continue;
      const r = rank.get(e.source) + 1;
      if (r > rank.get(e.target) && r < nodes.length) { rank.set(e.target, r); changed = true; }
    }
    if (!changed) break;
  }
  const linked = new Set(edges.flatMap((e) => [e.source, e.target]));
  for (const n of nodes) if (!linked.has(n.id)) rank.set(n.id, 1);
  const columns = [];
  for (const n of nodes) (columns[rank.get(n.id)] ||= []).push(n);
  const last = Math.max(1, columns.length - 1);
  const position = new Map();
  const margin = { x: 90, y: 50 };
  columns.forEach((column, c) => {
    if (!column) return;
    // Order a column by where its callers sit, so edges cross less.
    const weight = (n) => {
      const ys = edges.filter((e) => e.target === n.id && position.has(e.source))
        .map((e) => position.get(e.source).y);
      return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Infinity;
    };
    column.sort((a, b) => (weight(a) - weight(b)) || (a.idle - b.idle) || a.id.localeCompare(b.id));
    const step = (height - 2 * margin.y) / Math.max(1, column.length);
    column.forEach((n, i) => position.set(n.id, {
      x: margin.x + (c * (width - 2 * margin.x)) / last,
      y: margin.y + step * (i + 0.5),
    }));
  });
  return position;
}

function nodeShape(n) {
  if (n.kind === "service") {
    return el("polygon", { points: "0,-20 18,12 -18,12" });
  }
  return el("circle", { r: 17 });
}

function lockIcon(x, y) {
  return el("g", { class: "lock", transform: `translate(${x - 5},${y - 20})`, role: "img", "aria-label": "mutual TLS" },
    el("title", {}, "mutual TLS"),
    el("path", { d: "M2 5 V3.5 a3 3 0 0 1 6 0 V5 h-1.6 V3.5 a1.4 1.4 0 0 0 -2.8 0 V5 z" }),
    el("rect", { x: 0, y: 5, width: 10, height: 7, rx: 1.5 }));
}

function drawGraph(answer) {
  const width = Math.max(900, main.clientWidth - 40);
  const height = 560;
  const { nodes, edges } = answer;
  const position = layout(nodes, edges, width, height);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const svg = el("svg", {
    id: "graph", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-labelledby": "graph-title graph-desc", "data-rendered": renders + 1, "data-at": answer.at,
    "data-window-secs": answer.window_secs,
  });
  svg.append(
    el("title", { id: "graph-title" }, "Service graph"),
    el("desc", { id: "graph-desc" },
      `${nodes.length} nodes and ${edges.length} edges; the table below lists every edge.`),
    el("defs", {},
      el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7a90" })),
      el("marker", { id: "arrow-error", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#c62828" }))));
  const edgeLayer = el("g", { class: "edges" });
  // Edges between the same two columns are fanned out so their labels do not overlap.
  for (const e of edges) {
    const a = position.get(e.source), b = position.get(e.target);
    if (!a || !b) continue;
    const forward = b.x > a.x;
    const x1 = a.x + (forward ? 22 : 0), x2 = b.x - (forward ? 24 : 0);
    const y1 = a.y, y2 = b.y;
    const bend = forward ? (x2 - x1) / 2 : 80;
    const d = forward
      ? `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`
      : `M${x1},${y1} C${x1 + bend},${y1 - 120} ${x2 - bend},${y2 - 120} ${x2},${y2}`;
    const error = e.error_pct > 0;
    const idle = e.rps === 0 && !e.bytes_per_sec;
    const mx = (x1 + x2) / 2, my = forward ? (y1 + y2) / 2 : Math.min(y1, y2) - 90;
    const label = e.protocol === "tcp"
      ? `${rate(e.bytes_per_sec || 0)} B/s`
      : `${rate(e.rps)} rps · ${e.error_pct.toFixed(1)}%`;
    const from = byId.get(e.source), to = byId.get(e.target);
    const g = el("g", {
      class: `edge${error ? " error" : ""}${idle ? " idle" : ""}`,
      "data-source": e.source, "data-target": e.target, "data-protocol": e.protocol,
      "data-rps": e.rps, "data-error-pct": e.error_pct, "data-mtls": String(e.mtls),
    },
      el("title", {}, `${from.name} → ${to.name}: ${label}, p50 ${ms(e.p50_ms)}, p99 ${ms(e.p99_ms)}${e.mtls ? ", mTLS" : ""}`),
      el("path", { d, "marker-end": `url(#${error ? "arrow-error" : "arrow"})` }),
      el("text", { class: "edge-label", x: mx, y: my - 6, "text-anchor": "middle" }, label));
    if (e.mtls) g.append(lockIcon(mx + label.length * 3 + 10, my + 4));
    edgeLayer.append(g);
  }
  const nodeLayer = el("g", { class: "nodes" });
  for (const n of nodes) {
    const p = position.get(n.id);
    const g = el("g", {
      class: `node ${n.kind}${n.idle ? " idle" : ""}`, transform: `translate(${p.x},${p.y})`,
      "data-id": n.id, "data-kind": n.kind, "data-name": n.name, "data-version": n.version || null,
    },
      el("title", {}, n.kind === "service" ? `service ${n.host}` : n.kind === "workload" ? `workload ${n.namespace}/${n.name} (${n.app} ${n.version})` : "callers outside the mesh"),
      nodeShape(n),
      el("text", { y: 34, "text-anchor": "middle" }, n.name));
    if (n.kind === "workload" && n.version) {
      const w = 8 + n.version.length * 6.5;
      g.append(el("rect", { class: "badge", x: -w / 2, y: -7, width: w, height: 14, rx: 7 }),
        el("text", { class: "version", y: 4, "text-anchor": "middle" }, n.version));
    }
    if (n.kind === "service") {
      const link = el("a", { svg: true, href: `#/services/${encodeURIComponent(n.namespace)}/${encodeURIComponent(n.name)}`, "aria-label": `Service ${n.name} in ${n.namespace}` });
      link.append(g);
      nodeLayer.append(link);
    } else {
      nodeLayer.append(g);
    }
  }
  svg.append(edgeLayer, nodeLayer);
  return svg;
}

function edgeTable(answer) {
  const byId = new Map(answer.nodes.map((n) => [n.id, n]));
  const name = (id) => {
    const n = byId.get(id);
    return n.kind === "workload" ? `${n.name} (${n.version})` : n.name;
  };
  return el("table", { id: "edges" },
    el("caption", { class: "muted" }, "Edges, as drawn above"),
    el("thead", {}, el("tr", {},
      ["From", "To", "Protocol"].map((h) => el("th", { scope: "col" }, h)),
      ["Requests/s", "Errors", "p50", "p99", "mTLS"].map((h) => el("th", { scope: "col", class: "num" }, h)))),
    el("tbody", {}, answer.edges.map((e) => el("tr", {},
      el("td", {}, name(e.source)), el("td", {}, name(e.target)), el("td", {}, e.protocol),
      el("td", { class: "num" }, rate(e.rps)),
      el("td", { class: `num${e.error_pct > 0 ? " err" : ""}` }, `${e.error_pct.toFixed(1)}%`),
      el("td", { class: "num" }, ms(e.p50_ms)), el("td", { class: "num" }, ms(e.p99_ms)),
      el("td", { class: "num" }, e.mtls ? "yes" : "no")))));
}

async function showGraph() {
  const answer = await getJSON("/api/graph");
  interval = Math.max(500, answer.interval_ms || interval);
  showStatus(answer);
  const view = el("section", { "aria-labelledby": "graph-heading" },
    el("h2", { id: "graph-heading" }, "Service graph"),
    el("div", { class: "legend" },
      el("span", {}, el("svg", { width: 16, height: 16, viewBox: "-10 -12 20 22", "aria-hidden": "true" }, el("circle", { r: 8, fill: "#fff", stroke: "#13294b" })), "workload (version)"),
      el("span", {}, el("svg", { width: 16, height: 16, viewBox: "-10 -12 20 22", "aria-hidden": "true" }, el("polygon", { points: "0,-10 9,7 -9,7", fill: "#e3ecfb", stroke: "#13294b" })), "service"),
      el("span", {}, el("i", { class: "swatch" }), "requests/s · error %"),
      el("span", {}, el("i", { class: "swatch error" }), "errors"),
      el("span", {}, el("svg", { width: 12, height: 14, viewBox: "-1 -1 12 14", "aria-hidden": "true" }, lockIcon(5, 20)), "mutual TLS")),
    answer.nodes.length === 0
      ? el("p", { class: "muted" }, "No services yet.")
      : el("div", { class: "panel" }, drawGraph(answer)),
    answer.edges.length === 0 && answer.nodes.length > 0
      ? el("p", { class: "muted", id: "no-traffic" }, "No traffic in the window yet: send some requests.")
      : null,
    el("h3", {}, "Traffic"),
    edgeTable(answer));
  main.replaceChildren(view);
  rendered("graph");
}

// ---------------------------------------------------------------- a service

function chart(title, series, unit) {
  const w = 380, h = 170, pad = { l: 44, r: 8, t: 10, b: 22 };
  const points = series.flatMap((s) => s.points);
  if (!points.length) {
    return el("figure", { class: "chart panel" }, el("figcaption", {}, el("strong", {}, title)),
      el("p", { class: "muted" }, "No data yet."));
  }
  const ts = points.map((p) => p.t);
  const t0 = Math.min(...ts), t1 = Math.max(...ts, t0 + 1);
  const max = Math.max(1, ...points.map((p) => p.v ?? 0)) * 1.1;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  const svg = el("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": `${title} over the last ${Math.round((t1 - t0) / 1000)} s` },
    el("line", { class: "axis", x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b }),
    el("line", { class: "axis", x1: pad.l, y1: pad.t, x2: pad.l, y2: h - pad.b }),
    [0, 0.5, 1].map((f) => el("text", { class: "tick", x: pad.l - 4, y: y(max / 1.1 * f) + 3, "text-anchor": "end" },
      `${rate(max / 1.1 * f)}`)),
    el("text", { class: "tick", x: pad.l, y: h - 6 }, new Date(t0).toLocaleTimeString()),
    el("text", { class: "tick", x: w - pad.r, y: h - 6, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
  for (const s of series) {
    const pts = s.points.filter((p) => p.v !== null && p.v !== undefined);
    if (pts.length) svg.append(el("polyline", { class: `line ${s.class}`, points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ") }));
  }
  const now = series.map((s) => {
    const last = s.points[s.points.length - 1];
    return `${s.name} ${last && last.v !== null && last.v !== undefined ? rate(last.v) : "–"}${unit}`;
  }).join(" · ");
  return el("figure", { class: "chart panel" },
    el("figcaption", {}, el("strong", {}, title)),
    svg,
    el("div", { class: "legend" }, series.map((s) => el("span", {}, el("i", { class: `swatch ${s.class}` }), s.name))),
    el("p", { class: "now" }, `Now: ${now}`));
}

/** YAML for a JSON object, as a user wrote it. */
function yaml(value, indent = "") {
  if (Array.isArray(value)) {
    if (!value.length) return " []";
    return value.map((v) => `\n${indent}- ${yaml(v, indent + "  ").replace(/^\n\s*/, "")}`).join("");
  }
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length) return " {}";
    return keys.map((k) => {
      const v = value[k];
      const nested = v && typeof v === "object";
      return `\n${indent}${k}:${nested ? yaml(v, indent + "  ") : " " + JSON.stringify(v)}`;
    }).join("");
  }
  return JSON.stringify(value);
}

function configList(objects, kind) {
  if (!objects.length) return el("p", { class: "muted" }, `No ${kind} applies.`);
  return objects.map((o) => el("details", { class: "config" },
    el("summary", {}, `${o.kind} ${o.metadata.namespace || "default"}/${o.metadata.name}`),
    el("pre", {}, yaml(o).trimStart())));
}

async function showService(namespace, name) {
  const page = await getJSON(`/api/services/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`);
  const series = (points, field) => points.map((p) => ({ t: p.t, v: p[field] }));
  const section = el("section", { id: "service", "aria-labelledby": "service-heading", "data-rendered": renders + 1 },
    el("p", {}, el("a", { href: "#/graph" }, "← Graph")),
    el("h2", { id: "service-heading" }, `${page.name}`, el("span", { class: "muted" }, ` · ${page.namespace} · ${page.host}`)),
    el("p", {}, "Served by: ", page.workloads.length
      ? page.workloads.map((w) => `${w.name} (${w.version})`).join(", ")
      : el("span", { class: "muted" }, "no workload seen yet")),
    el("div", { class: "charts" },
      chart("Request rate", [
        { name: "inbound", class: "", points: series(page.inbound, "rps") },
        { name: "outbound", class: "out", points: series(page.outbound, "rps") }], " rps"),
      chart("Errors", [
        { name: "inbound", class: "error", points: series(page.inbound, "error_pct") },
        { name: "outbound", class: "out", points: series(page.outbound, "error_pct") }], "%"),
      chart("Inbound latency", [
        { name: "p50", class: "", points: series(page.inbound, "p50_ms") },
        { name: "p99", class: "p99", points: series(page.inbound, "p99_ms") }], " ms")),
    el("div", { class: "columns" },
      el("div", {},
        el("h3", {}, "VirtualServices"), configList(page.virtual_services, "VirtualService"),
        el("h3", {}, "DestinationRules"), configList(page.destination_rules, "DestinationRule")),
      el("div", {},
        el("h3", {}, "Analyzer findings"),
        page.findings.length
          ? el("ul", { class: "findings" }, page.findings.map((f) => el("li", {},
            el("span", { class: `level-${f.level}` }, f.level), ` [${f.code}] (${f.origin}) ${f.message}`)))
          : el("p", { class: "muted" }, "No findings."))));
  // Keep open what the user opened across refreshes.
  const open = new Set([...main.querySelectorAll("details[open] summary")].map((s) => s.textContent));
  for (const d of section.querySelectorAll("details")) if (open.has(d.querySelector("summary").textContent)) d.open = true;
  main.replaceChildren(section);
  rendered("service");
}

// ---------------------------------------------------------------- proxies

const TYPES = ["CDS", "LDS", "EDS", "RDS", "SDS"];

async function showProxies() {
  const proxies = (await getJSON("/api/proxies")).sort((a, b) => a.proxy.localeCompare(b.proxy));
  const state = (p, t) => {
    const s = p.types[t];
    const word = s ? s.state.replace("_", " ") : "NOT SENT";
    return el("span", { class: `state ${s ? s.state : ""}`, title: s && s.last_nack ? s.last_nack : null }, word);
  };
  const scrape = (p) => !p.scrape ? el("span", { class: "muted" }, "–")
    : p.scrape.error ? el("span", { class: "err", title: p.scrape.error }, "unreadable")
      : `${p.scrape.series} series`;
  const section = el("section", { id: "proxies", "aria-labelledby": "proxies-heading", "data-rendered": renders + 1 },
    el("h2", { id: "proxies-heading" }, "Proxies"),
    el("p", { class: "muted" }, "Each proxy's config sync with pilot, as ", el("code", {}, "mizzen proxy-status"), " shows it."),
    el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Proxy"), el("th", { scope: "col" }, "Address"),
        TYPES.map((t) => el("th", { scope: "col" }, t)),
        el("th", { scope: "col" }, "Control plane"), el("th", { scope: "col" }, "Metrics"))),
      el("tbody", {}, proxies.map((p) => el("tr", { "data-proxy": p.proxy },
        el("th", { scope: "row" }, p.proxy.split("~")[2] || p.proxy),
        el("td", {}, p.address || "–"),
        TYPES.map((t) => el("td", {}, state(p, t))),
        el("td", {}, p.control_plane),
        el("td", {}, scrape(p)))))),
    proxies.length ? null : el("p", { class: "muted" }, "No proxy is connected."));
  main.replaceChildren(section);
  rendered("proxies");
}

// ---------------------------------------------------------------- routing

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "services" && parts.length === 3) return { page: "graph", show: () => showService(parts[1], parts[2]) };
  if (parts[0] === "proxies") return { page: "proxies", show: showProxies };
  return { page: "graph", show: showGraph };
}

async function refresh() {
  clearTimeout(timer);
  const { page, show } = route();
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    await show();
  } catch (e) {
    status.replaceChildren(el("span", { class: "problem" }, `Cannot reach pilot: ${e.message}`));
  }
  timer = setTimeout(refresh, interval);
}

window.addEventListener("hashchange", () => { refresh(); main.focus(); });
refresh();

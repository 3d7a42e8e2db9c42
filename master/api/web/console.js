// The Vigil web console: pages drawn from the console's HTTP/JSON API, no framework.
//
// Everything shown comes from attacker-influenced data (hostnames, URIs, explanations), so the page is built
// with DOM nodes and textContent only: no innerHTML anywhere. The token lives in sessionStorage (this tab
// only) and travels as the Authorization header, never in a URL.
"use strict";

const TOKEN_KEY = "vigil.token";
const SEVERITIES = ["low", "medium", "high", "critical"];
const SVG_NS = "http://www.w3.org/2000/svg";

// -- DOM helpers -----------------------------------------------------------------------------------------

// el("a", {href: "#/x", class: "c"}, "text", child): strings become text nodes, never markup.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    // Links only ever point inside the console: no javascript: or other schemes from data.
    if (name === "href" && !String(value).startsWith("#/")) continue;
    node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", {colspan: headers.length}, "none"))]));
}

function row(...cells) {
  return el("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))));
}

function tags(values) {
  return el("span", {class: "tags"}, (values || []).map((v) => el("span", {}, v)));
}

function when(iso) {
  return iso ? String(iso).replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

function enumName(value, prefix) {
  return String(value || "").replace(prefix, "").toLowerCase().replaceAll("_", " ");
}

function link(path, ...parts) {
  return "#/" + [path, ...parts.map(encodeURIComponent)].join("/");
}

const view = () => document.getElementById("view");

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

// -- the API ---------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(`${status}: ${message}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const init = {method, headers: {Authorization: `Bearer ${token}`}, cache: "no-store"};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  let doc = {};
  try {
    doc = await answer.json();
  } catch (_) {
    doc = {error: answer.statusText};
  }
  if (answer.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
  }
  if (!answer.ok) throw new ApiError(answer.status, doc.error || answer.statusText);
  return doc;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

// -- pages -----------------------------------------------------------------------------------------------

async function incidentsPage() {
  const doc = await api("GET", "/v1/incidents?page_size=200");
  return [el("h1", {}, "Incidents"), table(
    ["Incident", "Status", "Score", "Devices", "Tactics", "Started", "Updated", "Summary"],
    (doc.incidents || []).map((i) => row(
      el("a", {href: link("incident", i.incident_id)}, i.incident_id),
      enumName(i.status, "INCIDENT_STATUS_"), i.score || 0,
      (i.devices || []).map((d) => d.hostname ? `${d.ip} (${d.hostname})` : d.ip).join(", "),
      tags(i.tactics), when(i.start_time), when(i.update_time),
      el("td", {class: "wrap"}, (i.summary || "").slice(0, 240)),
    )),
  )];
}

async function incidentPage(id) {
  const {incident: i} = await api("GET", `/v1/incidents/${encodeURIComponent(id)}`);
  const actions = await api("GET", "/v1/actions?include_inactive=true");
  const breaches = new Set(i.breach_ids || []);
  const mine = (r) => r.action.incident_id === i.incident_id || breaches.has(r.action.breach_id);
  return [
    el("h1", {}, `Incident ${i.incident_id}`),
    el("p", {}, `Status: ${enumName(i.status, "INCIDENT_STATUS_")} · score ${i.score || 0} · `,
      `from ${when(i.start_time)} to ${when(i.update_time)}`),
    el("p", {class: "summary", id: "summary"}, i.summary || ""),
    statusButtons(i),
    el("h2", {}, "ATT&CK"),
    el("p", {}, "Tactics: ", tags(i.tactics)),
    el("p", {}, "Techniques: ", tags(i.mitre_techniques)),
    el("h2", {}, "Phases"),
    el("ol", {}, (i.phases || []).map((p) => el("li", {}, p))),
    el("h2", {}, "Devices"),
    table(["Device", "Address", "MAC", "Hostname", "Tags"], (i.devices || []).map((d) => row(
      el("a", {href: link("device", d.device_id)}, d.device_id), d.ip, d.mac, d.hostname, tags(d.tags)))),
    el("h2", {}, "Actions"),
    actionsTable((actions.records || []).filter(mine), actions.actions || []),
    el("h2", {}, "Timeline"),
    table(["Time", "Device", "Phase", "Model", "Score", "What happened", "Explanation"],
      (i.timeline || []).map((t) => row(when(t.time), t.device ? t.device.ip : "", t.phase, t.model,
        t.score || 0, t.text, el("td", {class: "wrap"}, t.explanation)))),
  ];
}

function statusButtons(incident) {
  const box = el("div", {class: "status-buttons"});
  const choices = {acknowledged: "INCIDENT_STATUS_ACKNOWLEDGED", resolved: "INCIDENT_STATUS_RESOLVED"};
  for (const [label, status] of Object.entries(choices)) {
    if (incident.status === status) continue;
    box.append(changeButton(`Mark ${label}`, box, (reason) =>
      api("POST", `/v1/incidents/${encodeURIComponent(incident.incident_id)}/status`, {status, reason})));
  }
  return box;
}

// A button that asks for a reason (every change is audited with one), then runs `send(reason, extra)`.
function changeButton(label, box, send, extra) {
  const button = el("button", {type: "button", "data-change": label}, label);
  button.addEventListener("click", () => {
    for (const old of box.querySelectorAll("form.reason")) old.remove();
    const reason = el("input", {name: "reason", placeholder: `Reason to ${label.toLowerCase()}`, required: true,
      maxlength: 500});
    const form = el("form", {class: "reason"}, extra ? extra.input : null, reason,
      el("button", {type: "submit"}, `${label}: send`));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError("");
      try {
        await send(reason.value, extra ? extra.input.value : undefined);
        notice(`${label}: done`);
        await route();
      } catch (err) {
        showError(`${label} failed: ${err.message}`);
      }
    });
    box.append(form);
    reason.focus();
  });
  return button;
}

function notice(text) {
  sessionStorage.setItem("vigil.notice", text);
}

function actionButtons(record) {
  const box = el("div", {class: "action-buttons"});
  const path = (verb) => `/v1/actions/${encodeURIComponent(record.action.action_id)}/${verb}`;
  if (record.state === "proposed") {
    box.append(changeButton("Confirm", box, (reason) => api("POST", path("confirm"), {reason})));
    box.append(changeButton("Reject", box, (reason) => api("POST", path("clear"), {reason})));
  } else if (record.state === "applied" || record.state === "pending") {
    const minutes = el("select", {name: "extension"},
      [30, 60, 240, 1440].map((m) => el("option", {value: m * 60}, `+${m} min`)));
    box.append(changeButton("Extend", box,
      (reason, extension) => api("POST", path("extend"), {reason, extension: `${extension}s`}), {input: minutes}));
    box.append(changeButton("Revoke", box, (reason) => api("POST", path("clear"), {reason})));
  }
  return box;
}

function actionsTable(records, statuses) {
  const onResponder = new Map(statuses.map((s) => [s.action.action_id, s]));
  return table(["Action", "Kind", "Target", "State", "On the responder", "Expires", "Reason", ""],
    records.map((r) => {
      const live = onResponder.get(r.action.action_id);
      const backend = live ? `${enumName(live.state, "ACTION_STATE_")} (${live.backend})` : "";
      return el("tr", {"data-action-id": r.action.action_id},
        el("td", {class: "mono"}, r.action.action_id), el("td", {}, enumName(r.action.kind, "ACTION_KIND_")),
        el("td", {}, r.action.target_ip), el("td", {class: `state state-${r.state}`}, r.state),
        el("td", {class: `responder state-${live ? enumName(live.state, "ACTION_STATE_") : "none"}`}, backend),
        el("td", {}, when(r.action.expire_time)), el("td", {class: "wrap"}, r.action.reason),
        el("td", {}, actionButtons(r)));
    }));
}

async function actionsPage(params) {
  const inactive = params.get("include_inactive") === "true";
  const doc = await api("GET", `/v1/actions${query({include_inactive: inactive ? "true" : ""})}`);
  return [el("h1", {}, "Actions"),
    el("p", {}, el("a", {href: inactive ? "#/actions" : "#/actions?include_inactive=true"},
      inactive ? "Hide finished actions" : "Show finished actions too")),
    actionsTable(doc.records || [], doc.actions || [])];
}

async function breachesPage(params) {
  const models = await api("GET", "/v1/models");
  const filters = {};
  for (const key of ["device_id", "model", "min_severity", "since_time", "until_time", "include_suppressed"]) {
    if (params.get(key)) filters[key] = params.get(key);
  }
  const doc = await api("GET", `/v1/breaches${query({...filters, page_size: 200})}`);
  const acked = new Set(doc.acknowledged_breach_ids || []);
  const field = (name, label, input) => el("label", {}, label, input);
  const option = (value, label, current) => el("option", {value, selected: value === current}, label);
  const form = el("form", {class: "filters", id: "breach-filters"},
    field("model", "Model", el("select", {name: "model"}, option("", "any", filters.model),
      models.models.map((m) => option(m.model, m.model, filters.model)))),
    field("min_severity", "Severity at least", el("select", {name: "min_severity"},
      option("", "any", filters.min_severity), SEVERITIES.map((s) => option(s, s, filters.min_severity)))),
    field("device_id", "Device", el("input", {name: "device_id", value: filters.device_id || ""})),
    field("since_time", "Since (UTC)", el("input", {name: "since_time", type: "datetime-local",
      value: (filters.since_time || "").replace("Z", "")})),
    field("until_time", "Until (UTC)", el("input", {name: "until_time", type: "datetime-local",
      value: (filters.until_time || "").replace("Z", "")})),
    el("label", {}, "Suppressed too", el("input", {name: "include_suppressed", type: "checkbox", value: "true",
      checked: filters.include_suppressed === "true"})),
    el("button", {type: "submit"}, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (v) chosen.set(k, k.endsWith("_time") ? `${v.length === 16 ? `${v}:00` : v}Z` : v);
    }
    location.hash = `#/breaches${chosen.toString() ? `?${chosen}` : ""}`;
  });
  return [el("h1", {}, "Breaches"), form, table(
    ["Time", "Device", "Model", "Severity", "Score", "Explanation", "ATT&CK", ""],
    (doc.breaches || []).map((b) => row(when(b.time),
      el("a", {href: link("device", b.device.device_id)}, b.device.hostname ? `${b.device.ip} (${b.device.hostname})` : b.device.ip),
      b.model, el("td", {class: `sev-${b.severity}`}, b.severity), b.score || 0,
      el("td", {class: "wrap"}, b.explanation), tags(b.mitre_techniques), acked.has(b.breach_id) ? "acknowledged" : ""))),
  ];
}

async function devicesPage() {
  const doc = await api("GET", "/v1/devices?page_size=500");
  return [el("h1", {}, "Devices"), table(["Device", "Address", "MAC", "Hostname", "Tags", "Flows", "Last seen"],
    (doc.devices || []).map((d) => row(el("a", {href: link("device", d.device_id)}, d.device_id), d.ip, d.mac,
      d.hostname, tags(d.tags), d.flows_count || 0, when(d.last_seen_time))))];
}

async function devicePage(id) {
  const {device: d} = await api("GET", `/v1/devices/${encodeURIComponent(id)}`);
  const life = d.pattern_of_life || {};
  const peers = life.usual_peers || [];
  const byHour = Array.from({length: 24}, (_, h) => peers.filter((p) => (p.hours || []).includes(h)).length);
  const window = life.window_seconds || 60;
  return [
    el("h1", {}, `Device ${d.ip}`),
    el("p", {}, `${d.device_id} · MAC ${d.mac || "unknown"} · hostname `, el("span", {id: "hostname"}, d.hostname || "unknown"),
      ` · ${d.flows_count || 0} flows · first seen ${when(d.first_seen_time)} · last seen ${when(d.last_seen_time)}`),
    el("p", {}, "Addresses: ", tags(d.ips), " Tags: ", tags(d.tags)),
    el("h2", {}, "Usual hours (UTC): usual peers active in each hour of the day"),
    columnChart(byHour, (h) => String(h), (h) => (life.active_hours || []).includes(h)),
    el("h2", {}, `Usual volumes: mean count per ${window}-second window`),
    barChart((life.usual_volumes || []).map((v) => [v.feature, v.mean_per_window || 0])),
    el("h2", {}, "Usual peers: connections"),
    barChart(peers.map((p) => [p.endpoint, Number(p.connections_count || 0)])),
    table(["Peer", "Connections", "Mean bytes", "Hours (UTC)", "First seen", "Last seen"],
      peers.map((p) => row(p.endpoint, p.connections_count || 0, Math.round(p.mean_bytes || 0),
        (p.hours || []).join(" "), when(p.first_seen_time), when(p.last_seen_time)))),
  ];
}

// 24 columns, one per hour; `on(h)` marks the hours the device is usually active.
function columnChart(values, label, on) {
  const width = 24 * 28 + 20, height = 140, top = Math.max(1, ...values);
  const chart = svg("svg", {class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img"});
  values.forEach((v, h) => {
    const bar = Math.round((v / top) * 100);
    chart.append(svg("rect", {class: on(h) ? "bar" : "bar off", x: 10 + h * 28, y: 110 - bar, width: 22,
      height: Math.max(bar, 1)}));
    chart.append(svg("text", {x: 14 + h * 28, y: 126}, label(h)));
    if (v) chart.append(svg("text", {x: 14 + h * 28, y: 106 - bar}, v));
  });
  return chart;
}

// Horizontal bars: [label, value] pairs, scaled to the largest value.
function barChart(pairs) {
  if (!pairs.length) return el("p", {}, "Nothing learned yet.");
  const height = pairs.length * 22 + 10, width = 760, top = Math.max(...pairs.map((p) => p[1]), 1e-9);
  const chart = svg("svg", {class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img"});
  pairs.forEach(([name, value], i) => {
    const y = 6 + i * 22;
    chart.append(svg("text", {x: 6, y: y + 13}, String(name).slice(0, 40)));
    chart.append(svg("rect", {class: "bar", x: 300, y, width: Math.max(1, Math.round((value / top) * 380)),
      height: 16}));
    chart.append(svg("text", {x: 306 + Math.round((value / top) * 380), y: y + 13},
      Number.isInteger(value) ? value : value.toFixed(2)));
  });
  return chart;
}

async function modelsPage() {
  const doc = await api("GET", "/v1/models");
  return [el("h1", {}, "Model catalog"), table(["Model", "Id", "Breaches when", "ATT&CK", "Response"],
    doc.models.map((m) => row(m.model, el("td", {class: "mono"}, m.model_id), m.breaches_when, m.techniques,
      m.response)))];
}

// -- routing and login -----------------------------------------------------------------------------------

const PAGES = {
  incidents: incidentsPage,
  incident: incidentPage,
  devices: devicesPage,
  device: devicePage,
  breaches: breachesPage,
  actions: actionsPage,
  models: modelsPage,
};

async function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin();
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  const page = PAGES[name] || incidentsPage;
  const params = new URLSearchParams(search || "");
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.getAttribute("href") === `#/${name}`);
  }
  try {
    const nodes = await (rest.length ? page(decodeURIComponent(rest.join("/")), params) : page(params));
    const done = sessionStorage.getItem("vigil.notice");
    sessionStorage.removeItem("vigil.notice");
    view().replaceChildren(...(done ? [el("p", {class: "notice", role: "status"}, done)] : []), ...nodes);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showError(err.message);
  }
}

function showLogin() {
  document.getElementById("nav").hidden = true;
  document.getElementById("login").hidden = false;
  view().replaceChildren();
}

async function login(event) {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  showError("");
  try {
    await api("GET", "/v1/incidents?page_size=1");
  } catch (err) {
    showError(`Sign-in failed: ${err.message}`);
    return;
  }
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  await route();
}

function start() {
  document.getElementById("login").addEventListener("submit", login);
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showError("");
    showLogin();
  });
  window.addEventListener("hashchange", () => {
    showError("");
    route();
  });
  if (sessionStorage.getItem(TOKEN_KEY)) {
    document.getElementById("nav").hidden = false;
    route();
  } else {
    showLogin();
  }
}

start();

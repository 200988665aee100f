// The status page: renders each snapshot the server pushes over Server-Sent Events.
"use strict";

function text(value) {
  return value === null || value === undefined ? "–" : String(value);
}

function sparkline(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 140 24");
  svg.setAttribute("preserveAspectRatio", "none");
  const recent = points.slice(-140);
  const top = Math.max(1, ...recent);
  const step = recent.length > 1 ? 140 / (recent.length - 1) : 0;
  const line = document.createElementNS(svg.namespaceURI, "polyline");
  line.setAttribute("points", recent.map((v, i) => `${(i * step).toFixed(1)},${(23 - (v / top) * 22).toFixed(1)}`).join(" "));
  svg.appendChild(line);
  return svg;
}

function cell(row, name, value) {
  const td = document.createElement("td");
  td.className = name;
  if (value instanceof Node) td.appendChild(value); else td.textContent = text(value);
  row.appendChild(td);
}

function renderConnections(connections) {
  const body = document.querySelector("#connections tbody");
  body.replaceChildren(...connections.map((c) => {
    const row = document.createElement("tr");
    row.dataset.connection = c.name;
    row.dataset.state = c.state;
    cell(row, "name", c.name);
    cell(row, "market", c.market);
    const state = document.createElement("span");
    state.className = `state-${c.state}`;
    state.textContent = c.state;
    cell(row, "state", state);
    cell(row, "subscriptions", c.subscriptions);
    cell(row, "events", c.events);
    cell(row, "rate", c.events_per_second.toFixed(1));
    cell(row, "history", sparkline(c.history));
    cell(row, "dropped", c.dropped);
    cell(row, "reconnects", c.reconnects);
    cell(row, "age", c.last_message_age === null ? null : `${c.last_message_age.toFixed(1)} s ago`);
    return row;
  }));
}

function renderAdapter(adapter) {
  const dl = document.getElementById("adapter");
  if (!adapter) { dl.replaceChildren(); return; }
  const us = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} µs`);
  const items = [["adapter", adapter.state], ["dispatched", adapter.dispatched],
    ["handler errors", adapter.handler_errors], ["recv→callback p50", us(adapter.latency_p50_us)],
    ["p99", us(adapter.latency_p99_us)]];
  const b = adapter.backfill;
  if (b) {
    const last = b.last_duration_s === null ? "–" : `${b.last_duration_s.toFixed(3)} s`;
    items.push(["backfill gaps", b.gaps], ["backfilled events", b.events], ["backfills in flight", b.in_flight],
      ["backfills failed", b.failed], ["hold overflow", b.hold_overflow], ["last backfill", last]);
  }
  dl.replaceChildren(...items.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = text(v); dd.dataset.field = k;
    return [dt, dd];
  }));
}

function renderHappenings(happenings) {
  const list = document.getElementById("happenings");
  list.replaceChildren(...happenings.map((h) => {
    const li = document.createElement("li");
    const when = new Date(h.time * 1000).toLocaleTimeString();
    li.textContent = `${when} ${h.connection} ${h.status}${h.state ? " → " + h.state : ""}: ${h.message}`;
    return li;
  }));
}

function render(snapshot) {
  renderAdapter(snapshot.adapter);
  renderConnections(snapshot.connections);
  renderHappenings(snapshot.happenings);
  const live = document.getElementById("live");
  live.textContent = snapshot.stopped ? "stopped" : "live";
  live.className = snapshot.stopped ? "live off" : "live on";
}

const source = new EventSource("events");
source.onmessage = (message) => render(JSON.parse(message.data));
source.onerror = () => {
  const live = document.getElementById("live");
  live.textContent = "reconnecting…";
  live.className = "live off";
};

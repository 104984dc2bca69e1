// The cafe-federation console: one page, no framework, no build step.
//
// State arrives two ways. Deployment statuses stream from the hub (`/api/watch`: one WatchStatus
// per deployment listed, as server-sent events). Everything else (plans, history, clusters, the
// failover state, the audit log) is fetched when its view opens, after a command, and again when
// a streamed status changes while that view is shown. Nothing polls on a timer.

const state = {
  deployments: new Map(), // "ns/name" -> the deployment document (get deployments -o json)
  statuses: new Map(), // "ns/name" -> the latest streamed status (status -o json)
  gone: new Map(), // "ns/name" -> why its stream ended
  filter: "",
  events: null, // the EventSource
  route: { view: "deployments" },
  // What the current view fetched, and what it was fetched for.
  plan: null,
  planFor: "",
  history: null,
  historyFor: "",
  refreshTimer: null,
  evacuateUnit: "",
  evacuateForce: false,
};

// ---- small DOM helpers (text only: nothing from the hub is parsed as HTML) ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind || `phase-${text}`}` }, text);
}

function table(headers, rows, rowAttrs) {
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h(
      "tbody",
      {},
      rows.length === 0
        ? h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "none"))
        : rows.map((cells, i) => h("tr", rowAttrs ? rowAttrs(i) : {}, cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c))))),
    ),
  );
}

function notice(text, isError) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.className = isError ? "error" : "";
  el.hidden = !text;
}

// ---- talking to the console's server ----

async function api(path, body) {
  const init = body === undefined
    ? {}
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function keyOf(doc) {
  return `${doc.metadata.namespace}/${doc.metadata.name}`;
}

// The status a view shows: the streamed one, else the one in the listed document.
function statusOf(key) {
  return state.statuses.get(key) || state.deployments.get(key)?.status || null;
}

// A release holding for its pipeline's next stage waits for the pipeline, not for a human.
function waitsForAHuman(status) {
  return status && status.reason !== "AwaitingStage" && (status.phase === "Paused" || status.phase === "Failed");
}

function groupText(status) {
  if (!status || !status.batches) return "-";
  if (status.phase === "Stable") return `${status.batches}/${status.batches}`;
  return `${status.batch + 1}/${status.batches}`;
}

function revisionText(status) {
  if (!status) return "-";
  const current = status.currentRevision || "-";
  const update = status.updateRevision || "-";
  return current === update ? current : `${current} → ${update}`;
}

// ---- the stream ----

async function loadDeployments() {
  const list = await api("/api/deployments");
  state.deployments = new Map(list.items.map((doc) => [keyOf(doc), doc]));
  for (const key of [...state.statuses.keys()]) {
    if (!state.deployments.has(key)) state.statuses.delete(key);
  }
  state.gone.clear();
  watch();
}

// One EventSource for every listed deployment; the server holds one WatchStatus each.
function watch() {
  if (state.events) state.events.close();
  const keys = [...state.deployments.keys()];
  const live = document.getElementById("live");
  if (keys.length === 0) {
    state.events = null;
    live.textContent = "nothing to watch";
    live.className = "live";
    return;
  }
  const events = new EventSource(`/api/watch?deployments=${encodeURIComponent(keys.join(","))}`);
  state.events = events;
  events.onopen = () => {
    live.textContent = "live";
    live.className = "live on";
  };
  events.onerror = () => {
    // The browser connects again by itself, unless the console itself was away (it answered
    // nothing, or not an event stream): then start over, a few seconds on.
    live.textContent = "reconnecting";
    live.className = "live off";
    if (events.readyState === EventSource.CLOSED && state.events === events) {
      setTimeout(() => { if (state.events === events) watch(); }, 3000);
    }
  };
  events.addEventListener("status", (event) => {
    const { key, status } = JSON.parse(event.data);
    state.statuses.set(key, status);
    state.gone.delete(key);
    onStatus(key);
  });
  events.addEventListener("problem", (event) => {
    const { key, message } = JSON.parse(event.data);
    state.gone.set(key, message);
    render();
  });
}

function onStatus(key) {
  const view = state.route.view;
  if (view === "deployments") {
    render();
  } else if (view === "deployment") {
    // Another deployment's change is not this page's.
    if (state.route.key === key) render();
  } else {
    // A status change is what moves clusters, failover and the audit log: refresh what is shown.
    scheduleRefresh();
  }
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => render(true), 300);
}

// ---- routing ----

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "deployments" && parts.length === 3) {
    return { view: "deployment", key: `${parts[1]}/${parts[2]}`, namespace: parts[1], name: parts[2] };
  }
  if (["pipelines", "clusters", "failover", "audit"].includes(parts[0])) return { view: parts[0] };
  return { view: "deployments" };
}

function onRoute() {
  state.route = parseRoute();
  state.plan = null;
  state.planFor = "";
  state.history = null;
  state.historyFor = "";
  notice("");
  for (const link of document.querySelectorAll("header nav a")) {
    const view = state.route.view === "deployment" ? "deployments" : state.route.view;
    link.classList.toggle("active", link.dataset.view === view);
  }
  render(true);
}

// Draws the current view; `fetch` also fetches what the view needs beyond the stream.
function render(fetchToo) {
  const main = document.getElementById("view");
  const route = state.route;
  let content;
  switch (route.view) {
    case "deployment":
      content = deploymentView(route, fetchToo);
      break;
    case "pipelines":
      content = fetched("pipelines", "/api/pipelines", fetchToo, pipelinesView);
      break;
    case "clusters":
      content = fetched("clusters", "/api/clusters", fetchToo, clustersView);
      break;
    case "failover":
      content = fetched("failover", "/api/failover", fetchToo, failoverView);
      break;
    case "audit":
      content = fetched("audit", "/api/audit?limit=200", fetchToo, auditView);
      break;
    default:
      content = listView();
  }
  // Keep the filter's focus and caret while the list redraws under it.
  const focused = document.activeElement?.id;
  const caret = document.activeElement?.selectionStart;
  main.replaceChildren(content);
  if (focused) {
    const again = document.getElementById(focused);
    if (again) {
      again.focus();
      if (caret != null && again.setSelectionRange) again.setSelectionRange(caret, caret);
    }
  }
}

const cache = {};

// A view over one fetched document: drawn from the last answer, fetched again when asked.
function fetched(name, path, fetchToo, draw) {
  if (fetchToo) {
    api(path)
      .then((data) => {
        cache[name] = data;
        if (state.route.view === name) render();
      })
      .catch((error) => notice(error.message, true));
  }
  return cache[name] ? draw(cache[name]) : h("p", { class: "empty" }, "loading…");
}

// ---- the list of deployments ----

function listView() {
  const filter = state.filter.toLowerCase();
  const keys = [...state.deployments.keys()].filter((key) => {
    const status = statusOf(key);
    const text = `${key} ${status?.phase || ""} ${status?.reason || ""}`.toLowerCase();
    return text.includes(filter);
  });
  const waiting = keys.filter((key) => waitsForAHuman(statusOf(key))).length;
  const rows = keys.map((key) => {
    const status = statusOf(key);
    return [
      h("a", { href: `#/deployments/${key}` }, key),
      status ? badge(status.phase) : "-",
      [status?.reason || "", waitsForAHuman(status) ? [" ", badge("needs you", "needs")] : null],
      groupText(status),
      revisionText(status),
      state.gone.get(key) || status?.message || "",
    ];
  });
  return h(
    "section",
    {},
    h("h1", {}, "Deployments"),
    h(
      "div",
      { class: "toolbar" },
      h("input", {
        id: "filter",
        type: "search",
        placeholder: "Filter by name, namespace, phase or reason",
        value: state.filter,
        oninput: (event) => {
          state.filter = event.target.value;
          render();
        },
      }),
      h("span", {}, `${keys.length} shown, ${waiting} waiting for a human`),
      h("button", { onclick: () => loadDeployments().then(render).catch((e) => notice(e.message, true)) }, "Reload list"),
    ),
    table(["Deployment", "Phase", "Reason", "Group", "Revision", "Message"], rows, (i) => ({
      class: `link${waitsForAHuman(statusOf(keys[i])) ? " waiting" : ""}`,
      dataset: { deployment: keys[i] },
      onclick: (event) => {
        if (event.target.tagName !== "A") location.hash = `#/deployments/${keys[i]}`;
      },
    })),
  );
}

// ---- one deployment ----

function deploymentView(route, fetchToo) {
  const key = route.key;
  const status = statusOf(key);
  const base = `/api/deployments/${encodeURIComponent(route.namespace)}/${encodeURIComponent(route.name)}`;
  // The plan changes with the target and with evacuations; the history with the revisions.
  const planFor = status ? `${status.updateRevision}|${status.batches}|${status.units.map((u) => `${u.unit}:${u.replicas}:${!!u.evacuated}`).join(",")}` : "";
  if (fetchToo || planFor !== state.planFor) {
    state.planFor = planFor;
    api(`${base}/plan`)
      .then((plan) => { if (state.route.key === key) { state.plan = plan; render(); } })
      .catch((e) => notice(e.message, true));
  }
  const historyFor = status ? `${status.currentRevision}|${status.updateRevision}` : "";
  if (fetchToo || historyFor !== state.historyFor) {
    state.historyFor = historyFor;
    api(`${base}/history`)
      .then((history) => { if (state.route.key === key) { state.history = history; render(); } })
      .catch((e) => notice(e.message, true));
  }
  if (!status) {
    return h("section", {}, h("h1", {}, key), h("p", { class: "empty" }, state.gone.get(key) || "waiting for its status…"));
  }
  const gone = state.gone.get(key);
  return h(
    "section",
    { id: "deployment", dataset: { phase: status.phase, batch: status.batch } },
    h("h1", {}, key),
    h(
      "div",
      { class: "summary" },
      h("span", { id: "phase" }, badge(status.phase)),
      status.reason ? h("span", { id: "reason" }, status.reason) : null,
      waitsForAHuman(status) ? badge("needs you", "needs") : null,
      h("span", { id: "group" }, `group ${groupText(status)}`),
      h("span", {}, `revision ${revisionText(status)}`),
    ),
    h("p", { class: "message", id: "message" }, gone || status.message),
    actions(route, status),
    h("h2", {}, "Regions and units"),
    unitMap(status),
    h("h2", {}, "Group plan"),
    groupPlan(status),
    h("h2", {}, "Analysis"),
    analysis(status.analysis),
    h("h2", {}, "Problems"),
    problems(status),
    h("h2", {}, "History"),
    state.history
      ? h("div", { id: "history" }, table(["Revision", "Name", "Created", "Current"], state.history.items.map((r) => [r.number, r.name, r.created, r.current ? "current" : ""])))
      : h("p", { class: "empty" }, "loading…"),
  );
}

const VERBS = {
  continue: { label: "Continue", text: "Start the next group of this release; in a blue-green release, switch the traffic of the group whose preview is ready." },
  promote: { label: "Promote", text: "Run every remaining group without pausing (the analysis still gates each one)." },
  pause: { label: "Pause", text: "Stop the release after its current group." },
  retry: { label: "Retry", text: "Try the current group of this failed release again." },
  rollback: { label: "Rollback", text: "Return every unit to the previous stable revision.", danger: true },
};

function actions(route, status) {
  return h(
    "div",
    { class: "actions" },
    Object.entries(VERBS).map(([verb, about]) =>
      h(
        "button",
        {
          class: about.danger ? "danger" : "",
          dataset: { action: verb },
          onclick: () => act(`${about.label} ${route.key}?`, about.text, (reason) =>
            api(`/api/deployments/${encodeURIComponent(route.namespace)}/${encodeURIComponent(route.name)}/${verb}`, {
              // As --batch: a command sent twice, or after someone else moved the release, is refused.
              batch: verb === "rollback" || verb === "promote" ? undefined : status.batch,
              reason,
            }),
          ),
        },
        about.label,
      ),
    ),
  );
}

// Asks for confirmation, then runs `send(reason)`, showing the hub's answer or refusal.
function act(title, text, send) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const reason = document.getElementById("confirm-reason");
  reason.value = "";
  // Enter in the reason confirms (the form's first button would be Cancel).
  reason.onkeydown = (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      dialog.close("confirm");
    }
  };
  dialog.onclose = () => {
    if (dialog.returnValue !== "confirm") return;
    send(reason.value)
      .then((result) => {
        notice(result.changed ? `Done: ${result.message}` : `Unchanged: ${result.message}`, false);
        render(state.route.view !== "deployment");
      })
      .catch((error) => notice(error.message, true));
  };
  dialog.returnValue = "";
  dialog.showModal();
}

function bar(kind, label, value, of) {
  const fill = h("div", { class: "fill" });
  fill.style.width = `${of > 0 ? Math.min(100, (100 * value) / of) : 0}%`;
  return h("div", { class: `bar ${kind}` }, h("span", {}, label), h("div", { class: "track" }, fill), h("span", { class: "count" }, `${value}/${of}`));
}

// A unit of a blue-green release: where its switch stands, the preview, what serves, and how long
// the old pods stay as the way back.
function blueGreen(u) {
  const bg = u.blueGreen;
  return h(
    "div",
    { class: "blue-green", dataset: { state: bg.state } },
    h("div", {}, "blue-green ", badge(bg.state, `bg-${bg.state}`)),
    bar("updated", "preview", bg.previewReady, u.replicas),
    bar("ready", "serving new", bg.updatedServing, u.replicas),
    bg.standby > 0 ? h("div", { class: "cluster" }, `${bg.standby} old pods kept until ${bg.standbyUntil}`) : null,
  );
}

function unitMap(status) {
  const regionOf = new Map((state.plan?.units || []).map((u) => [u.unit, u.region]));
  const regions = new Map();
  for (const unit of status.units) {
    const region = regionOf.get(unit.unit) || "(region unknown)";
    if (!regions.has(region)) regions.set(region, []);
    regions.get(region).push(unit);
  }
  return h(
    "div",
    { class: "regions" },
    [...regions].map(([region, units]) =>
      h(
        "div",
        { class: "region", dataset: { region } },
        h("h3", {}, region),
        h(
          "div",
          { class: "units" },
          units.map((u) =>
            h(
              "div",
              { class: `unit${u.evacuated ? " evacuated" : ""}${u.connected ? "" : " disconnected"}`, dataset: { unit: u.unit, evacuated: !!u.evacuated } },
              h("div", { class: "name" }, u.unit, " ", u.evacuated ? badge("evacuated", "evacuated") : null, u.connected ? null : badge("Disconnected")),
              h("div", { class: "cluster" }, `cluster ${u.cluster}, ${u.replicas} replicas`),
              bar("ready", "ready", u.ready, u.replicas),
              bar("updated", "updated", u.updated, u.replicas),
              bar("target", "target", u.target, u.replicas),
              u.blueGreen ? blueGreen(u) : null,
            ),
          ),
        ),
      ),
    ),
  );
}

function groupPlan(status) {
  const plan = state.plan;
  if (!plan) return h("p", { class: "empty" }, "loading…");
  const units = plan.units.map((u) => u.unit);
  const rows = plan.batches.map((group) => {
    const cells = new Map(group.units.map((step) => [step.unit, step]));
    return [
      `${group.index + 1}${group.index === status.batch && status.phase !== "Stable" ? " ◀ current" : ""}`,
      ...units.map((unit) => {
        const step = cells.get(unit);
        return step ? `+${step.size} → ${step.updated}` : "-";
      }),
    ];
  });
  return table(["Group", ...units], rows, (i) => ({
    class: i === status.batch && status.phase !== "Stable" ? "current" : "",
    dataset: { group: i },
  }));
}

function analysis(run) {
  if (!run) return h("p", { class: "empty" }, "no analysis for this release");
  return h(
    "div",
    {},
    h("p", {}, `group ${run.group + 1}: `, badge(run.phase, run.phase === "Passed" ? "phase-Stable" : run.phase === "Failed" ? "phase-Failed" : "phase-Progressing"), run.message ? ` ${run.message}` : ""),
    table(
      ["Metric", "Unit", "Value", "Result", "Time", "Message"],
      run.measurements.map((m) => [m.metric, m.unit || "-", m.value ?? "-", m.result, m.time, m.message || ""]),
    ),
  );
}

function problems(status) {
  const items = status.units.flatMap((u) => (u.problems || []).map((p) => `${u.unit}: ${p}`));
  if (items.length === 0) return h("p", { class: "empty" }, "none");
  return h("ul", { class: "problems" }, items.map((p) => h("li", {}, p)));
}

// ---- clusters, failover, audit ----

// ---- pipelines ----

// Which pipeline commands apply in which phase: each is sent with the stage shown (as --stage).
const PIPELINE_VERBS = {
  approve: { label: "Approve", when: ["AwaitingApproval"], text: "Open the gate: the next stage starts." },
  pause: { label: "Pause", when: ["Running", "AwaitingApproval"], text: "Pause the stage's releases; no stage starts until resumed." },
  resume: { label: "Resume", when: ["Paused", "Failed"], text: "Resume the stage's releases." },
  abort: { label: "Abort", when: ["Running", "AwaitingApproval", "Paused", "Failed", "RollingBack"], text: "Stop driving the deployments: they stay where they stand.", danger: true },
  rollback: { label: "Roll back all", when: ["Running", "AwaitingApproval", "Paused", "Failed", "Succeeded", "Aborted"], text: "Every release back to its revision from before the pipeline, latest stage first.", danger: true },
};

function pipelinesView(data) {
  if (!data.items.length) {
    return h("section", {}, h("h1", {}, "Pipelines"), h("p", { class: "empty" }, "No ReleasePipeline on this hub."));
  }
  return h(
    "section",
    {},
    h("h1", {}, "Pipelines"),
    h("div", { class: "toolbar" }, h("button", { onclick: () => render(true) }, "Refresh")),
    data.items.map((doc) => pipelineCard(doc)),
  );
}

function pipelineCard(doc) {
  const key = keyOf(doc);
  const status = doc.status || {};
  const stage = status.stageIndex == null ? "-" : `${status.stage} (${status.stageIndex + 1}/${status.stages})`;
  const buttons = Object.entries(PIPELINE_VERBS)
    .filter(([, about]) => about.when.includes(status.phase))
    .map(([verb, about]) =>
      h(
        "button",
        {
          class: about.danger ? "danger" : verb === "approve" ? "primary" : "",
          dataset: { pipelineAction: verb },
          onclick: () => act(`${about.label} ${key}?`, about.text, (reason) =>
            api(`/api/pipelines/${encodeURIComponent(doc.metadata.namespace)}/${encodeURIComponent(doc.metadata.name)}/${verb}`, {
              stage: status.stage || undefined,
              reason,
            }),
          ),
        },
        about.label,
      ),
    );
  return h(
    "article",
    { class: "pipeline", dataset: { pipeline: key, phase: status.phase || "" } },
    h("h2", {}, key, " ", badge(status.phase || "-", status.phase === "AwaitingApproval" ? "needs" : `phase-${status.phase}`)),
    h("p", {}, `Stage ${stage} · gate ${status.gate || "None"} (${status.gateState || "-"})`),
    status.waitingFor ? h("p", { class: "waiting-for" }, `Waiting for: ${status.waitingFor}`) : "",
    status.message ? h("p", {}, status.message) : "",
    h("div", { class: "actions" }, buttons),
    table(
      ["Stage", "Deployment", "Regions", "Standing", "Phase", "Reason", "Group", "Revision"],
      (status.releases || []).map((r) => [
        r.stage,
        h("a", { href: `#/deployments/${doc.metadata.namespace}/${r.deployment}` }, r.deployment),
        r.regions.length ? r.regions.join(", ") : "the rest",
        badge(r.standing, `standing-${r.standing}`),
        r.phase || "-",
        r.reason || "-",
        r.groups && r.phase !== "Stable" ? `${r.group + 1}/${r.groups}` : "-",
        r.revision,
      ]),
      (i) => ({ dataset: { deployment: status.releases[i].deployment, stage: status.releases[i].stage } }),
    ),
  );
}

function clustersView(data) {
  return h(
    "section",
    {},
    h("h1", {}, "Clusters"),
    h("div", { class: "toolbar" }, h("button", { onclick: () => render(true) }, "Refresh")),
    table(
      ["Cluster", "State", "Agent", "Last heartbeat", "Units", "Slices"],
      data.items.map((c) => [c.name, badge(c.state), c.agentVersion || "-", c.lastSeen || "never", c.units.join(", "), c.slices]),
      (i) => ({ dataset: { cluster: data.items[i].name } }),
    ),
  );
}

function failoverView(data) {
  // What was typed survives the redraws that streamed changes cause.
  const unit = h("input", {
    id: "evacuate-unit",
    placeholder: "unit",
    required: true,
    value: state.evacuateUnit,
    oninput: (event) => { state.evacuateUnit = event.target.value; },
  });
  const force = h("input", {
    id: "evacuate-force",
    type: "checkbox",
    checked: state.evacuateForce,
    onchange: (event) => { state.evacuateForce = event.target.checked; },
  });
  return h(
    "section",
    {},
    h("h1", {}, "Failover"),
    h("p", {}, `Automatic failover is ${data.autoFailover ? "on" : "off"}.`),
    table(
      ["Unit", "Region", "Cluster", "Phase", "Capacity", "Since", "Reason", ""],
      data.items.map((u) => [
        u.unit,
        u.region,
        u.cluster,
        badge(u.phase, u.phase === "Evacuated" ? "evacuated" : "phase-Stable"),
        u.capacityRestored ? "restored" : "restoring",
        u.since || "-",
        u.reason || "-",
        u.phase === "Evacuated"
          ? h("button", { dataset: { failback: u.unit }, onclick: () => act(`Fail back ${u.unit}?`, "Return the unit to service: it scales out first, then the others scale in.", (reason) => api("/api/failover/failback", { unit: u.unit, reason })) }, "Fail back")
          : "",
      ]),
      (i) => ({ dataset: { unit: data.items[i].unit, phase: data.items[i].phase } }),
    ),
    h("h2", {}, "Evacuate a unit (admins)"),
    h(
      "form",
      {
        class: "inline",
        onsubmit: (event) => {
          event.preventDefault();
          const target = unit.value.trim();
          act(`Evacuate ${target}?`, "Every deployment's replicas move to the surviving units; the evacuated unit scales in once the new pods are ready.", (reason) =>
            api("/api/failover/evacuate", { unit: target, force: force.checked, reason }),
          );
        },
      },
      unit,
      h("label", {}, force, " its cluster is gone (force)"),
      h("button", { type: "submit", class: "danger", id: "evacuate" }, "Evacuate"),
    ),
  );
}

function auditView(data) {
  return h(
    "section",
    {},
    h("h1", {}, "Audit log"),
    table(["Time", "Who", "What", "Result"], data.items.map((e) => [e.time, e.who, e.what, e.result])),
  );
}

// ---- start ----

async function start() {
  window.addEventListener("hashchange", onRoute);
  state.route = parseRoute();
  api("/api/context")
    .then((context) => { document.getElementById("hub").textContent = `hub ${context.hub} · cafectl ${context.version}`; })
    .catch((error) => notice(error.message, true));
  try {
    await loadDeployments();
  } catch (error) {
    notice(error.message, true);
  }
  onRoute();
}

start();

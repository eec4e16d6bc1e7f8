// Agents: assistants, their versions, the graph, and a form (from the input schema) that starts
// a run on a new thread through the thread protocol (so the thread page can follow it live).
import {
  api, card, clear, command, empty, errorBox, fmtTime, h, loading, pageHeader, parseJson,
  pretty, shortId, withButton,
} from "../core.js";
import { drawGraph } from "../graph.js";

export async function renderAgents(view, assistantId, signal) {
  clear(view, pageHeader("Agents", "Graphs served by this Dockyard and their assistants"), loading());
  const assistants = await api("POST", "/assistants/search",
    { limit: 100, sort_by: "graph_id", sort_order: "asc" }, { signal });
  const list = h("div", { class: "list" });
  if (!assistants.length) {
    list.append(empty("No assistants yet", "Add a graph to langgraph.json (or dockyard.toml) and restart the server."));
  }
  for (const a of assistants) {
    list.append(h("a", {
      class: `list-item${a.assistant_id === assistantId || a.graph_id === assistantId ? " active" : ""}`,
      href: `#/agents/${a.assistant_id}`, "data-assistant": a.graph_id,
    },
    h("div", { class: "list-title" }, a.name || a.graph_id),
    h("div", { class: "list-sub" }, a.graph_id, " · v", a.version)));
  }
  const detail = h("div", { class: "detail" });
  clear(view, pageHeader("Agents", `${assistants.length} assistant${assistants.length === 1 ? "" : "s"} on this server`),
    h("div", { class: "split" }, h("aside", { class: "split-list" }, list), detail));
  const chosen = assistants.find((a) => a.assistant_id === assistantId || a.graph_id === assistantId)
    || (!assistantId && assistants[0]);
  if (!chosen) {
    if (assistantId) detail.append(errorBox(`No assistant ${assistantId} on this server`, "Not found"));
    return;
  }
  if (!assistantId) list.querySelector(".list-item")?.classList.add("active");
  await renderAssistant(detail, chosen, signal);
}

async function renderAssistant(detail, a, signal) {
  const id = a.assistant_id;
  const graphBox = h("div", {}, loading("Drawing the graph…"));
  const versionsBox = h("div", {}, loading());
  const formBox = h("div", {}, loading());
  clear(detail,
    h("div", { class: "detail-head" },
      h("div", {}, h("h2", { class: "detail-title" }, a.name || a.graph_id),
        h("div", { class: "meta-row" },
          h("span", {}, "graph ", h("code", {}, a.graph_id)),
          h("span", {}, "assistant ", h("code", { title: id }, shortId(id))),
          h("span", {}, "version ", String(a.version)),
          h("span", {}, "updated ", fmtTime(a.updated_at)))),
      a.description ? h("p", { class: "muted" }, a.description) : null),
    h("div", { class: "grid-2" },
      card("Start a run", formBox),
      card("Graph", graphBox, h("span", { class: "legend" },
        h("span", { class: "legend-solid" }), "edge", h("span", { class: "legend-dashed" }), "conditional"))),
    card("Versions", versionsBox));

  const [graph, schemas, versions] = await Promise.allSettled([
    api("GET", `/assistants/${id}/graph?xray=1`, undefined, { signal }),
    api("GET", `/assistants/${id}/schemas`, undefined, { signal }),
    api("POST", `/assistants/${id}/versions`, { limit: 20 }, { signal }),
  ]);
  clear(graphBox, graph.status === "fulfilled" ? drawGraph(graph.value) : errorBox(graph.reason, "Cannot draw the graph"));
  clear(formBox, schemas.status === "fulfilled" ? runForm(a, schemas.value) : errorBox(schemas.reason, "No input schema"));
  if (versions.status === "rejected") clear(versionsBox, errorBox(versions.reason));
  else if (!versions.value.length) clear(versionsBox, empty("No versions recorded"));
  else {
    clear(versionsBox, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Version"), h("th", {}, "Name"), h("th", {}, "Config"), h("th", {}, "Created"))),
      h("tbody", {}, versions.value.map((v) => h("tr", {},
        h("td", {}, `v${v.version}`, v.version === a.version ? h("span", { class: "badge badge-idle tag" }, "latest") : null),
        h("td", {}, v.name || "—"),
        h("td", {}, h("code", { class: "clip" }, JSON.stringify(v.config || {}))),
        h("td", {}, fmtTime(v.created_at)))))));
  }
}

/** A starting value for a property, from its JSON schema. */
function sample(name, prop) {
  if (prop.default !== undefined && prop.default !== null) return prop.default;
  if (name === "messages") return [{ role: "user", content: "Hello!" }];
  const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
  if (type === "array") return [];
  if (type === "object") return {};
  return undefined;
}

function fieldFor(name, prop, required) {
  const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== "null") : prop.type;
  const title = prop.title || name;
  const hint = prop.description ? h("div", { class: "field-hint" }, prop.description.split("\n")[0]) : null;
  let input;
  let read;
  if (type === "string" && !prop.enum) {
    input = h("input", { type: "text", name, placeholder: title });
    read = () => (input.value === "" ? undefined : input.value);
  } else if (prop.enum) {
    input = h("select", { name }, h("option", { value: "" }, "—"), prop.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
    read = () => (input.value === "" ? undefined : JSON.parse(input.value));
  } else if (type === "number" || type === "integer") {
    input = h("input", { type: "number", name, step: type === "integer" ? "1" : "any" });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (type === "boolean") {
    input = h("select", { name }, h("option", { value: "" }, "—"), h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    read = () => (input.value === "" ? undefined : input.value === "true");
  } else {
    const start = sample(name, prop);
    input = h("textarea", { name, rows: start && JSON.stringify(start).length > 30 ? 4 : 2, class: "mono", spellcheck: "false" },
      start === undefined ? "" : pretty(start));
    read = () => parseJson(input.value, title) ?? undefined;
  }
  return {
    name, read,
    el: h("label", { class: "field" },
      h("span", { class: "field-label" }, title, required ? h("span", { class: "req" }, " *") : null,
        h("span", { class: "field-type" }, type || "json")),
      input, hint),
  };
}

function runForm(a, schemas) {
  const schema = schemas.input_schema || {};
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const fields = Object.entries(props).map(([k, p]) => fieldFor(k, p, required.has(k)));
  const raw = h("textarea", { class: "mono", rows: 6, spellcheck: "false", name: "__raw" }, "{}");
  const useRaw = !fields.length;
  const out = h("div", { class: "form-result" });
  const button = h("button", { class: "btn btn-primary", type: "submit", "data-action": "start-run" }, "Start run on a new thread");
  const form = h("form", { class: "form", "data-form": "start-run" },
    useRaw
      ? h("label", { class: "field" }, h("span", { class: "field-label" }, "Input (JSON)"), raw)
      : fields.map((f) => f.el),
    h("div", { class: "form-actions" }, button,
      h("span", { class: "muted small" }, "Creates a thread, starts the run, opens it live.")),
    out);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    withButton(button, out, async () => {
      let input;
      if (useRaw) input = parseJson(raw.value, "Input") ?? {};
      else {
        input = {};
        for (const f of fields) {
          const v = f.read();
          if (v !== undefined) input[f.name] = v;
        }
      }
      const thread = await api("POST", "/threads", { metadata: { graph_id: a.graph_id, started_from: "ui" } });
      await command(thread.thread_id, "run.start", { assistant_id: a.assistant_id, input });
      location.hash = `#/threads/${thread.thread_id}`;
    });
  });
  return form;
}

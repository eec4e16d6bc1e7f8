// Hash router: #/agents[/<id>], #/threads[?status=…], #/threads/<id>, #/threads/<id>/runs/<id>
// (a run's trace), #/compare?a=<thread>/<run>&b=…, #/queue, #/store.
import { api, clear, errorBox, h } from "./core.js";
import { renderAgents } from "./pages/agents.js";
import { renderCompare } from "./pages/compare.js";
import { renderQueue } from "./pages/queue.js";
import { renderReleases } from "./pages/releases.js";
import { renderAudit } from "./pages/audit.js";
import { renderStore } from "./pages/store.js";
import { renderThread } from "./pages/thread.js";
import { renderThreads } from "./pages/threads.js";
import { renderTrace } from "./pages/trace.js";

const main = document.getElementById("main");
let current = null; // AbortController of the page on screen: stops its streams and requests

function parse() {
  const raw = location.hash.replace(/^#\/?/, "") || "agents";
  const [path, query] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent),
           params: new URLSearchParams(query || "") };
}

async function route() {
  if (current) current.abort();
  current = new AbortController();
  const { signal } = current;
  const { parts, params } = parse();
  const [section, id, sub, subId] = parts;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === section);
  }
  const page = sub === "runs" && subId ? "trace" : id ? `${section}-detail` : section;
  const view = h("div", { class: "page", "data-page": page });
  clear(main, view);
  try {
    if (section === "agents") await renderAgents(view, id, signal);
    else if (section === "threads" && id && sub === "runs" && subId) await renderTrace(view, id, subId, signal);
    else if (section === "threads" && id) await renderThread(view, id, signal);
    else if (section === "compare") await renderCompare(view, params, signal);
    else if (section === "queue") await renderQueue(view, signal);
    else if (section === "threads") await renderThreads(view, params, signal);
    else if (section === "store") await renderStore(view, params, signal);
    else if (section === "releases") await renderReleases(view, params, signal);
    else if (section === "audit") await renderAudit(view, params, signal);
    else clear(view, errorBox(`No page at #/${parts.join("/")}`, "Not found"));
  } catch (err) {
    if (err.name !== "AbortError") clear(view, errorBox(err));
  }
}

window.addEventListener("hashchange", route);
route();
api("GET", "/info").then((info) => {
  const v = info && (info.version || info.dockyard_version);
  if (v) document.getElementById("server-version").textContent = `v${v}`;
}).catch(() => {});

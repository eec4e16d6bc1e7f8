// Draws GET /assistants/{id}/graph as SVG: a layered top-down layout computed here (longest
// path layering from __start__, back edges ignored, one barycentre pass to reduce crossings).
import { h, svg } from "./core.js";

const NODE_H = 34;
const GAP_Y = 54;
const GAP_X = 28;
const CHAR_W = 7.4;

function label(node) {
  if (node.id === "__start__") return "start";
  if (node.id === "__end__") return "end";
  return node.id;
}

export function layout(graph) {
  const nodes = (graph.nodes || []).map((n) => ({ ...n, label: label(n) }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const edges = (graph.edges || []).filter((e) => byId.has(e.source) && byId.has(e.target));
  const out = new Map(nodes.map((n) => [n.id, []]));
  for (const e of edges) out.get(e.source).push(e);

  // Back edges (cycles) found by DFS from the roots; they do not constrain layering.
  const state = new Map();
  const back = new Set();
  const roots = nodes.filter((n) => n.id === "__start__").concat(nodes);
  const visit = (id) => {
    state.set(id, 1);
    for (const e of out.get(id)) {
      const s = state.get(e.target);
      if (s === 1) back.add(e);
      else if (!s) visit(e.target);
    }
    state.set(id, 2);
  };
  for (const r of roots) if (!state.get(r.id)) visit(r.id);

  // Longest-path layering over the forward edges (Kahn order).
  const layer = new Map(nodes.map((n) => [n.id, 0]));
  const indeg = new Map(nodes.map((n) => [n.id, 0]));
  for (const e of edges) if (!back.has(e)) indeg.set(e.target, indeg.get(e.target) + 1);
  const queue = nodes.filter((n) => indeg.get(n.id) === 0).map((n) => n.id);
  while (queue.length) {
    const id = queue.shift();
    for (const e of out.get(id)) {
      if (back.has(e)) continue;
      layer.set(e.target, Math.max(layer.get(e.target), layer.get(id) + 1));
      indeg.set(e.target, indeg.get(e.target) - 1);
      if (indeg.get(e.target) === 0) queue.push(e.target);
    }
  }
  const maxLayer = Math.max(0, ...layer.values());
  if (byId.has("__end__")) layer.set("__end__", Math.max(maxLayer, layer.get("__end__")));

  const layers = [];
  for (const n of nodes) (layers[layer.get(n.id)] ||= []).push(n);
  // One top-down barycentre pass: order each layer by the mean position of its parents.
  const pos = new Map();
  layers.forEach((row, i) => {
    if (i > 0) {
      const bary = (n) => {
        const ps = edges.filter((e) => e.target === n.id && !back.has(e) && pos.has(e.source));
        return ps.length ? ps.reduce((s, e) => s + pos.get(e.source), 0) / ps.length : 0;
      };
      row.sort((a, b) => bary(a) - bary(b));
    }
    row.forEach((n, j) => pos.set(n.id, j));
  });

  for (const n of nodes) n.w = Math.max(72, n.label.length * CHAR_W + 28);
  const rowWidths = layers.map((row) => (row || []).reduce((s, n) => s + n.w, 0) + GAP_X * ((row || []).length - 1));
  const width = Math.max(240, ...rowWidths) + 80;
  layers.forEach((row, i) => {
    let x = (width - rowWidths[i]) / 2;
    for (const n of row || []) {
      n.x = x;
      n.y = 20 + i * (NODE_H + GAP_Y);
      x += n.w + GAP_X;
    }
  });
  const height = 20 + layers.length * (NODE_H + GAP_Y) - GAP_Y + 20;
  return { nodes, edges, back, byId, width, height };
}

export function drawGraph(graph) {
  const { nodes, edges, back, byId, width, height } = layout(graph);
  const root = svg("svg", {
    class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Graph with ${nodes.length} nodes`,
  });
  root.append(svg("defs", {},
    svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))));
  for (const e of edges) {
    const a = byId.get(e.source);
    const b = byId.get(e.target);
    const x1 = a.x + a.w / 2;
    const x2 = b.x + b.w / 2;
    let d;
    if (back.has(e) || b.y <= a.y) {
      // Route a back edge around the right of every node between its two ends.
      const top = Math.min(a.y, b.y);
      const bottom = Math.max(a.y, b.y);
      const side = Math.max(...nodes.filter((n) => n.y >= top && n.y <= bottom).map((n) => n.x + n.w)) + 36;
      // Leave below the source (a neighbour may sit on its right), come in on the target's right.
      const sx = a.x + a.w * 0.7;
      d = `M${sx},${a.y + NODE_H} C${sx},${a.y + NODE_H + 30} ${side},${a.y + NODE_H + 30} ${side},${a.y} `
        + `S${side},${b.y + NODE_H / 2} ${b.x + b.w},${b.y + NODE_H / 2}`;
    } else {
      const y1 = a.y + NODE_H;
      const y2 = b.y;
      const my = (y1 + y2) / 2;
      d = `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2 - 2}`;
    }
    const cls = `edge${e.conditional ? " edge-conditional" : ""}`;
    root.append(svg("path", { d, class: cls, "marker-end": "url(#arrow)",
      "data-edge": `${e.source}->${e.target}` }));
    if (e.data && typeof e.data === "string") {
      root.append(svg("text", { x: (x1 + x2) / 2 + 4, y: (a.y + NODE_H + b.y) / 2, class: "edge-label" }, e.data));
    }
  }
  for (const n of nodes) {
    const special = n.id === "__start__" || n.id === "__end__";
    const sub = n.id.includes(":");
    const g = svg("g", { class: `node${special ? " node-terminal" : ""}${sub ? " node-sub" : ""}`,
      "data-node": n.id });
    g.append(svg("rect", { x: n.x, y: n.y, width: n.w, height: NODE_H, rx: special ? NODE_H / 2 : 8 }));
    g.append(svg("text", { x: n.x + n.w / 2, y: n.y + NODE_H / 2 + 4.5, "text-anchor": "middle" }, n.label));
    g.append(svg("title", {}, n.id));
    root.append(g);
  }
  return h("div", { class: "graph-wrap" }, root);
}

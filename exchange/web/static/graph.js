// The object page's relationship graph: the object in the middle, the objects related to it
// on a circle around it, an edge per reference or relationship. Plain SVG built with DOM
// calls: every label is set as text (never parsed as markup), and the data comes from the
// page's JSON block, so the Content-Security-Policy needs no inline script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const holder = document.getElementById("graph");
  const block = document.getElementById("graph-data");
  if (!holder || !block) return;
  const data = JSON.parse(block.textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const width = 760, height = Math.max(320, 260 + data.nodes.length * 6);
  const cx = width / 2, cy = height / 2, radius = Math.min(width, height) / 2 - 70;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Relationship graph");
  svg.classList.add("graph");

  const place = new Map();
  const others = data.nodes.filter((n) => n.id !== data.center);
  place.set(data.center, [cx, cy]);
  others.forEach((n, i) => {
    const angle = (2 * Math.PI * i) / Math.max(others.length, 1) - Math.PI / 2;
    place.set(n.id, [cx + radius * Math.cos(angle), cy + radius * Math.sin(angle)]);
  });

  function element(name, attributes, parent) {
    const made = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) made.setAttribute(key, value);
    parent.appendChild(made);
    return made;
  }

  const edges = element("g", { class: "edges" }, svg);
  for (const edge of data.edges) {
    const from = place.get(edge.source), to = place.get(edge.target);
    if (!from || !to) continue;
    element("line", { x1: from[0], y1: from[1], x2: to[0], y2: to[1], class: "edge" }, edges);
    const label = element("text", { x: (from[0] + to[0]) / 2, y: (from[1] + to[1]) / 2 - 4,
                                    class: "edge-label", "text-anchor": "middle" }, edges);
    label.textContent = edge.label;
  }

  const nodes = element("g", { class: "nodes" }, svg);
  for (const node of data.nodes) {
    const [x, y] = place.get(node.id);
    let parent = nodes;
    if (node.linked && node.id !== data.center) {
      parent = element("a", { href: holder.dataset.objects + encodeURIComponent(node.id) + "/" },
                       nodes);
    }
    const group = element("g", { class: `node node-${node.role}`, "data-id": node.id }, parent);
    const circle = element("circle", { cx: x, cy: y, r: node.id === data.center ? 14 : 10,
                                       class: `tlp-dot tlp-dot-${(node.tlp || "none").replace("+", "-")}` },
                           group);
    const title = element("title", {}, circle);
    title.textContent = `${node.type} ${node.id}`;
    const text = element("text", { x, y: y + 26, "text-anchor": "middle", class: "node-label" },
                         group);
    const label = node.label.length > 40 ? node.label.slice(0, 39) + "…" : node.label;
    text.textContent = `${node.type}: ${label}`;
  }
  holder.appendChild(svg);
});

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
  // Labels sit outside the circle, so it leaves room for them at the sides, and grows with
  // the number of neighbours so that their labels do not overlap.
  const width = 1000, height = Math.min(1100, Math.max(360, 120 + data.nodes.length * 22));
  const cx = width / 2, cy = height / 2;
  // An ellipse as tall as the picture: the labels, read across, need height more than width.
  const rx = width / 2 - 320, ry = height / 2 - 40;
  const crowded = data.nodes.length > 12;  // then edge names go in the neighbours' labels
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Relationship graph");
  svg.classList.add("graph");

  const place = new Map();
  const others = data.nodes.filter((n) => n.id !== data.center);
  place.set(data.center, [cx, cy]);
  others.forEach((n, i) => {
    // Half a step off the vertical: no label sits on top of another at the poles.
    const step = (2 * Math.PI) / Math.max(others.length, 1);
    const angle = step * (i + 0.5) - Math.PI / 2;
    place.set(n.id, [cx + rx * Math.cos(angle), cy + ry * Math.sin(angle)]);
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
    if (crowded) continue;
    const label = element("text", { x: (from[0] + to[0]) / 2, y: (from[1] + to[1]) / 2 - 4,
                                    class: "edge-label", "text-anchor": "middle" }, edges);
    label.textContent = edge.label;
  }
  const via = new Map();  // neighbour -> how it is related, for the crowded labels
  for (const edge of data.edges) {
    const other = edge.source === data.center ? edge.target : edge.source;
    if (other !== data.center && !via.has(other)) via.set(other, edge.label);
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
    title.textContent = `${node.type}: ${node.label} (${node.id})`;
    const label = node.label.length > 26 ? node.label.slice(0, 25) + "…" : node.label;
    let text;
    if (node.id === data.center) {
      text = element("text", { x, y: y + 30, "text-anchor": "middle", class: "node-label" },
                     group);
    } else {  // outside the circle, reading away from it
      const right = x >= cx - 1;
      text = element("text", { x: x + (right ? 16 : -16), y: y + 4,
                               "text-anchor": right ? "start" : "end", class: "node-label" },
                     group);
    }
    // Crowded: how it is related instead of its type (the type shows on hover).
    text.textContent = crowded && node.id !== data.center
      ? `${via.get(node.id) || node.type} · ${label}` : `${node.type}: ${label}`;
  }
  holder.appendChild(svg);
});

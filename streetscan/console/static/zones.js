// Zone editor: polygons drawn in camera pixels on the camera's picture (an SVG over the image
// whose viewBox is the picture's size, so no coordinate conversion beyond the SVG's own).
// The server validates with the streams.yaml model; this page only shows what it says.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("zone-data").textContent);
  const svg = document.getElementById("overlay");
  const NS = "http://www.w3.org/2000/svg";
  const view = svg.viewBox.baseVal;
  const handleR = Math.max(view.width, view.height) / 140;
  const $ = (id) => document.getElementById(id);
  let zones = data.zones.map((z) => Object.assign({}, z));
  let current = zones.length ? 0 : -1;
  let dragging = null;

  function toPixels(evt) {
    const pt = svg.createSVGPoint();
    pt.x = evt.clientX; pt.y = evt.clientY;
    const p = pt.matrixTransform(svg.getScreenCTM().inverse());
    return [Math.round(Math.min(Math.max(p.x, 0), view.width)), Math.round(Math.min(Math.max(p.y, 0), view.height))];
  }

  function draw() {
    svg.replaceChildren();
    zones.forEach((z, i) => {
      if (!z.polygon || !z.polygon.length) return;
      const poly = document.createElementNS(NS, z.polygon.length > 2 ? "polygon" : "polyline");
      poly.setAttribute("points", z.polygon.map((p) => p.join(",")).join(" "));
      poly.setAttribute("class", "zone" + (i === current ? " selected" : ""));
      poly.dataset.zone = z.id;
      svg.appendChild(poly);
      if (i !== current) return;
      z.polygon.forEach((p, k) => {
        const c = document.createElementNS(NS, "circle");
        c.setAttribute("cx", p[0]); c.setAttribute("cy", p[1]); c.setAttribute("r", handleR);
        c.setAttribute("class", "handle");
        c.addEventListener("mousedown", (e) => { dragging = k; e.stopPropagation(); e.preventDefault(); });
        svg.appendChild(c);
      });
    });
    const list = $("zone-list");
    list.replaceChildren(...zones.map((z, i) => new Option(`${z.id} (${z.kind}${z.polygon ? "" : ", whole frame"})`, i, false, i === current)));
    fillForm();
  }

  function fillForm() {
    const z = zones[current];
    const fields = ["zone-id", "zone-kind", "zone-grade", "zone-schedule"];
    fields.forEach((f) => { $(f).disabled = !z; });
    document.querySelectorAll(".zone-class").forEach((box) => {
      box.disabled = !z; box.checked = !!(z && z.classes && z.classes.includes(box.value));
    });
    if (!z) return;
    $("zone-id").value = z.id;
    $("zone-kind").value = z.kind;
    $("zone-grade").value = z.grade || "arterial";
    $("zone-schedule").value = z.schedule ? z.schedule.active.join(", ") : "";
  }

  function readForm() {
    const z = zones[current];
    if (!z) return;
    z.id = $("zone-id").value.trim();
    z.kind = $("zone-kind").value;
    z.grade = $("zone-grade").value;
    const classes = [...document.querySelectorAll(".zone-class:checked")].map((b) => b.value);
    if (classes.length) z.classes = classes; else delete z.classes;
    const ranges = $("zone-schedule").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (ranges.length) z.schedule = Object.assign({}, z.schedule || {}, {active: ranges}); else delete z.schedule;
  }

  svg.addEventListener("click", (e) => {
    if (current < 0 || dragging !== null) return;
    const z = zones[current];
    z.polygon = (z.polygon || []).concat([toPixels(e)]);
    draw();
  });
  svg.addEventListener("mousemove", (e) => {
    if (dragging === null) return;
    zones[current].polygon[dragging] = toPixels(e);
    draw();
  });
  window.addEventListener("mouseup", () => { if (dragging !== null) setTimeout(() => { dragging = null; }, 0); });

  $("zone-list").addEventListener("change", (e) => { readForm(); current = Number(e.target.value); draw(); });
  ["zone-id", "zone-kind", "zone-grade", "zone-schedule"].forEach((f) => $(f).addEventListener("change", () => { readForm(); draw(); }));
  document.querySelectorAll(".zone-class").forEach((b) => b.addEventListener("change", readForm));
  $("new-zone").addEventListener("click", () => {
    readForm();
    let n = zones.length + 1;
    while (zones.some((z) => z.id === `zone-${n}`)) n++;
    zones.push({id: `zone-${n}`, kind: "sidewalk", grade: "arterial", polygon: []});
    current = zones.length - 1;
    draw();
  });
  $("delete-zone").addEventListener("click", () => {
    if (current < 0) return;
    zones.splice(current, 1);
    current = Math.min(current, zones.length - 1);
    draw();
  });
  $("undo-point").addEventListener("click", () => {
    const z = zones[current];
    if (z && z.polygon && z.polygon.length) { z.polygon.pop(); draw(); }
  });
  $("whole-frame").addEventListener("click", () => {
    const z = zones[current];
    if (z) { delete z.polygon; draw(); }
  });
  $("save-zones").addEventListener("click", async () => {
    readForm();
    $("saved").textContent = "";
    $("errors").replaceChildren();
    const body = {version: data.version, zones: zones.map((z) => {
      const out = Object.assign({}, z);
      if (out.polygon && !out.polygon.length) delete out.polygon;
      return out;
    })};
    const resp = await fetch(`/api/cameras/${encodeURIComponent(data.camera)}/zones`, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": data.csrf},
      body: JSON.stringify(body),
    });
    let answer = {};
    try { answer = await resp.json(); } catch (e) { answer = {errors: [`${resp.status} ${resp.statusText}`]}; }
    if (resp.ok) {
      data.version = answer.version;
      $("saved").textContent = answer.message;
    } else {
      const errors = answer.errors || [answer.detail || `${resp.status} ${resp.statusText}`];
      $("errors").replaceChildren(...errors.map((m) => { const li = document.createElement("li"); li.textContent = m; return li; }));
    }
  });
  draw();
})();

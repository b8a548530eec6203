// Labelling view: boxes in the frame's pixels on an SVG over the picture (its viewBox is the
// frame's size). Mouse and keyboard do the same things; the server checks every label.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("label-data").textContent);
  const svg = document.getElementById("overlay");
  const NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const W = data.width, H = data.height;
  const handleR = Math.max(W, H) / 120;
  let version = data.label ? data.label.version : 0;
  let boxes = data.label ? data.label.boxes.map((b) => ({object: b.object, box: b.box.slice()})) : [];
  let current = boxes.length ? 0 : -1;
  let drag = null;  // {mode: "new"|"move"|"corner", start, origin, corner}
  $("nothing").checked = !!(data.label && data.label.nothing);
  $("difficult").checked = !!(data.label && data.label.difficult);

  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  function toPixels(evt) {
    const pt = svg.createSVGPoint();
    pt.x = evt.clientX; pt.y = evt.clientY;
    const p = pt.matrixTransform(svg.getScreenCTM().inverse());
    return [clamp(Math.round(p.x), 0, W), clamp(Math.round(p.y), 0, H)];
  }
  function norm(b) {
    return [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])];
  }

  function draw() {
    svg.replaceChildren();
    boxes.forEach((b, i) => {
      const [x1, y1, x2, y2] = norm(b.box);
      const r = document.createElementNS(NS, "rect");
      r.setAttribute("x", x1); r.setAttribute("y", y1);
      r.setAttribute("width", x2 - x1); r.setAttribute("height", y2 - y1);
      r.setAttribute("class", "label-box" + (i === current ? " selected" : ""));
      r.dataset.index = i;
      svg.appendChild(r);
      const t = document.createElementNS(NS, "text");
      const right = x1 > W * 0.7;  // near the right edge the name ends at the box's right side, not past the frame
      t.setAttribute("x", right ? x2 - 4 : x1 + 4); t.setAttribute("y", Math.max(y1 - 6, 24));
      t.setAttribute("text-anchor", right ? "end" : "start");
      t.setAttribute("class", "zone-label");
      t.textContent = b.object;
      svg.appendChild(t);
      if (i !== current) return;
      [[x1, y1], [x2, y1], [x2, y2], [x1, y2]].forEach((c, k) => {
        const h = document.createElementNS(NS, "circle");
        h.setAttribute("cx", c[0]); h.setAttribute("cy", c[1]); h.setAttribute("r", handleR);
        h.setAttribute("class", "handle");
        h.dataset.corner = k;
        svg.appendChild(h);
      });
    });
    $("box-list").replaceChildren(...boxes.map((b, i) => new Option(`${i + 1}. ${b.object} [${norm(b.box).map(Math.round).join(", ")}]`, i, false, i === current)));
    if (boxes[current]) $("object").value = boxes[current].object;
  }

  function select(i) { current = boxes.length ? ((i % boxes.length) + boxes.length) % boxes.length : -1; draw(); }
  function addBox(box) {
    boxes.push({object: $("object").value, box: box});
    $("nothing").checked = false;
    select(boxes.length - 1);
  }
  function setObject(name) {
    $("object").value = name;
    if (boxes[current]) { boxes[current].object = name; draw(); }
  }
  function shift(dx, dy, resize) {
    const b = boxes[current];
    if (!b) return;
    const [x1, y1, x2, y2] = norm(b.box);
    if (resize) b.box = [x1, y1, clamp(x2 + dx, x1 + 2, W), clamp(y2 + dy, y1 + 2, H)];
    else {
      const mx = clamp(dx, -x1, W - x2), my = clamp(dy, -y1, H - y2);
      b.box = [x1 + mx, y1 + my, x2 + mx, y2 + my];
    }
    draw();
  }

  svg.addEventListener("mousedown", (e) => {
    e.preventDefault();
    svg.focus();
    const p = toPixels(e);
    if (e.target.dataset.corner !== undefined) {
      const b = norm(boxes[current].box), k = Number(e.target.dataset.corner);
      const opposite = [[b[2], b[3]], [b[0], b[3]], [b[0], b[1]], [b[2], b[1]]][k];
      drag = {mode: "corner", fixed: opposite};
    } else if (e.target.dataset.index !== undefined) {
      select(Number(e.target.dataset.index));
      drag = {mode: "move", start: p, origin: norm(boxes[current].box)};
    } else {
      drag = {mode: "new", start: p};
    }
  });
  svg.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const p = toPixels(e);
    if (drag.mode === "new") {
      if (Math.abs(p[0] - drag.start[0]) < 3 && Math.abs(p[1] - drag.start[1]) < 3) return;
      addBox([drag.start[0], drag.start[1], p[0], p[1]]);
      drag = {mode: "corner", fixed: drag.start};
    } else if (drag.mode === "corner") {
      boxes[current].box = [drag.fixed[0], drag.fixed[1], p[0], p[1]];
      draw();
    } else {
      const o = drag.origin;
      const dx = clamp(p[0] - drag.start[0], -o[0], W - o[2]), dy = clamp(p[1] - drag.start[1], -o[1], H - o[3]);
      boxes[current].box = [o[0] + dx, o[1] + dy, o[2] + dx, o[3] + dy];
      draw();
    }
  });
  window.addEventListener("mouseup", () => {
    if (drag && boxes[current]) { boxes[current].box = norm(boxes[current].box); draw(); }
    drag = null;
  });

  async function save(then) {
    $("saved").textContent = "";
    $("errors").replaceChildren();
    const body = {version: version, boxes: boxes.map((b) => ({object: b.object, box: norm(b.box)})),
      nothing: $("nothing").checked, difficult: $("difficult").checked};
    const resp = await fetch(`/api/label/${encodeURIComponent(data.frame)}`, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": data.csrf},
      body: JSON.stringify(body),
    });
    let answer = {};
    try { answer = await resp.json(); } catch (e) { answer = {errors: [`${resp.status} ${resp.statusText}`]}; }
    if (!resp.ok) {
      const errors = answer.errors || [answer.detail || `${resp.status} ${resp.statusText}`];
      $("errors").replaceChildren(...errors.map((m) => { const li = document.createElement("li"); li.textContent = m; return li; }));
      return;
    }
    version = answer.version;
    $("saved").textContent = `v${version} ✓`;
    document.body.dataset.saved = String(version);
    if (then) window.location.href = then;
  }
  const go = (frame) => { if (frame) window.location.href = `/label/${encodeURIComponent(frame)}`; };

  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey) return;  // a list's own keys; the browser's shortcuts
    const step = e.shiftKey ? 10 : 1;
    const arrows = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step]};
    if (arrows[e.key]) { shift(...arrows[e.key], e.altKey); e.preventDefault(); return; }
    const k = e.key.toLowerCase();
    if (k === "b") addBox([W / 2 - W / 8, H / 2 - H / 8, W / 2 + W / 8, H / 2 + H / 8].map(Math.round));
    else if (e.key === "Tab") select(current + (e.shiftKey ? -1 : 1));
    else if (e.key === "Delete" || e.key === "Backspace") { if (current >= 0) { boxes.splice(current, 1); select(Math.min(current, boxes.length - 1)); } }
    else if (k === "[" || k === "]") {
      const opts = [...$("object").options].map((o) => o.value);
      setObject(opts[(opts.indexOf($("object").value) + (k === "]" ? 1 : opts.length - 1)) % opts.length]);
    } else if (/^[1-9]$/.test(k)) { const o = $("object").options[Number(k) - 1]; if (o) setObject(o.value); }
    else if (k === "x") $("nothing").checked = !$("nothing").checked;
    else if (k === "d") $("difficult").checked = !$("difficult").checked;
    else if (k === "s") save(null);
    else if (k === "n") save(data.next ? `/label/${encodeURIComponent(data.next)}` : "/label");
    else if (k === "p") go(data.previous);
    else return;
    e.preventDefault();
  });
  $("object").addEventListener("change", () => { setObject($("object").value); svg.focus(); });
  $("box-list").addEventListener("change", (e) => { select(Number(e.target.value)); svg.focus(); });
  $("save").addEventListener("click", () => save(null));
  $("save-next").addEventListener("click", () => save(data.next ? `/label/${encodeURIComponent(data.next)}` : "/label"));
  $("previous").addEventListener("click", () => go(data.previous));
  draw();
  svg.focus();
})();

/* Checks test_dashboard_layout_browser.py runs inside the dashboard page (added as an init script,
 * so they sit on window.layoutChecks before the page's own script runs). */
window.layoutChecks = (() => {
  "use strict";
  const TOLERANCE_PX = 0.5;  // sub-pixel rounding of boxes

  // Opaque pixels of the line colour (--accent, #2f7d78): the fill under the line is 12 % alpha
  // and the dashed midline a light grey, so neither counts.
  function linePixels(canvas) {
    if (!canvas.width || !canvas.height) return 0;
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      const teal = Math.abs(d[i] - 47) < 40 && Math.abs(d[i + 1] - 125) < 40 && Math.abs(d[i + 2] - 120) < 40;
      if (d[i + 3] >= 200 && teal) n++;
    }
    return n;
  }

  function chart() {
    const room = document.getElementById("room-chart");
    const sparks = [...document.querySelectorAll("#tiles .tile")].map((t) =>
      [t.dataset.participant, Number(t.querySelector(".engagement .spark").dataset.points || 0)]);
    return { points: Number(room.dataset.points || 0), pixels: linePixels(room), sparks };
  }

  function roomDraws() {
    const room = document.getElementById("room-chart");
    return Number(room.dataset.points || 0) >= 1 && linePixels(room) > 0;
  }

  function where(el) {
    const tag = el.tagName.toLowerCase();
    return el.className ? `${tag}.${String(el.className).split(" ")[0]}` : tag;
  }

  function outside(r, box) {
    return r.left < box.left - TOLERANCE_PX || r.right > box.right + TOLERANCE_PX ||
      r.top < box.top - TOLERANCE_PX || r.bottom > box.bottom + TOLERANCE_PX;
  }

  const span = (r) => `[${r.left.toFixed(1)}, ${r.right.toFixed(1)}] x [${r.top.toFixed(1)}, ${r.bottom.toFixed(1)}]`;

  // Every tile, every element in it: nothing wider than its own box (an ellipsis is the one
  // sanctioned clip), nothing outside the tile; the role picker shown, labelled "Role", inside its
  // tile and on top at its centre; "face in view" on one line; the page never scrolls sideways.
  function layout() {
    const problems = [];
    const root = document.scrollingElement;
    if (root.scrollWidth > window.innerWidth) {
      problems.push(`page is ${root.scrollWidth} px wide in a ${window.innerWidth} px window`);
    }
    const tiles = [...document.querySelectorAll("#tiles .tile")];
    for (const tile of tiles) {
      const who = tile.dataset.participant;
      const box = tile.getBoundingClientRect();
      for (const el of [tile, ...tile.querySelectorAll("*")]) {
        if (!el.getClientRects().length) continue;  // not rendered (hidden)
        const cs = getComputedStyle(el);
        const ellipsis = cs.textOverflow === "ellipsis" && cs.overflowX === "hidden" && cs.whiteSpace === "nowrap";
        if (el.scrollWidth > el.clientWidth && !ellipsis) {
          problems.push(`${who}: ${where(el)} overflows (scrollWidth ${el.scrollWidth} > clientWidth ${el.clientWidth})`);
        }
        const r = el.getBoundingClientRect();
        if (r.width > 0 && (r.left < box.left - TOLERANCE_PX || r.right > box.right + TOLERANCE_PX)) {
          problems.push(`${who}: ${where(el)} ${span(r)} leaves the tile ${span(box)}`);
        }
      }
      const face = tile.querySelector(".face-label");
      const line = parseFloat(getComputedStyle(face).lineHeight);
      const faceHeight = face.getBoundingClientRect().height;
      if (faceHeight > 1.5 * line) problems.push(`${who}: "${face.innerText}" wraps (${faceHeight} px, line ${line} px)`);

      const select = tile.querySelector("select.role");
      const cs = getComputedStyle(select);
      if (cs.display === "none" || cs.visibility !== "visible" || Number(cs.opacity) === 0 ||
          !select.offsetWidth || !select.offsetHeight) {
        problems.push(`${who}: role picker not shown (display ${cs.display}, visibility ${cs.visibility})`);
      }
      const s = select.getBoundingClientRect();
      if (outside(s, box)) problems.push(`${who}: role picker ${span(s)} is outside its tile ${span(box)}`);
      const labels = [...select.labels].filter((l) => l.getClientRects().length && l.innerText.trim().startsWith("Role"));
      if (!labels.length) problems.push(`${who}: role picker has no visible "Role" label`);
      select.scrollIntoView({ block: "center", inline: "nearest" });
      const c = select.getBoundingClientRect();
      const hit = document.elementFromPoint(c.left + c.width / 2, c.top + c.height / 2);
      if (!(hit === select || select.contains(hit))) {
        problems.push(`${who}: role picker is covered by ${hit ? where(hit) : "nothing"}`);
      }
    }
    window.scrollTo(0, 0);
    return { problems, tiles: tiles.length };
  }

  // Resolves after the page has laid out and painted n frames (a resize redraws the charts).
  function frames(n) {
    return new Promise((done) => { const step = () => (n-- > 0 ? requestAnimationFrame(step) : done()); step(); });
  }

  return { chart, roomDraws, layout, frames };
})();

/* MicroCue presenter dashboard. No build step, no dependencies, works offline.
 *
 * Data: WS /ws/meetings/{id}/live?token= sends a snapshot, then cues (see docs/api.md).
 * Rendering: DOM nodes are created once and updated in place; charts redraw at most
 * a few times a second, so nothing flickers while cues stream in.
 */
(function () {
  "use strict";

  // --- constants -------------------------------------------------------------------------------
  const SPARK_WINDOW_S = 60;          // tile sparklines: the last minute
  const SPARK_MIN_WINDOW_S = 10;      // ...but never stretch less than 10 s across the width
  const ROOM_WINDOW_MS = 5 * 60000;   // meeting engagement line: the last five minutes
  const ROOM_MIN_WINDOW_MS = 60000;   // ...stretched over at least one minute while younger
  const ROOM_SAMPLE_MS = 2000;        // one room sample every 2 s
  // The cue streams speak only on change and repeat an unchanged value every 30 s
  // (inference/engagement.py, REFRESH_S), so a value holds until the next one of its kind; a
  // stream silent for longer than that refresh plus 5 s of slack has stopped.
  const HOLD_MS = 35000;
  const FEED_MAX = 40;                // expression entries kept on screen
  const HISTORY_MAX = 600;            // points kept per participant series
  const RECONNECT_MIN_MS = 1000;      // reconnect backoff: 1 s doubling up to 30 s, with jitter
  const RECONNECT_MAX_MS = 30000;
  const SILENCE_MS = 45000;           // three missed heartbeats (15 s each): the link is dead
  const PARTICIPANTS_REFRESH_MS = 5000;  // names, consent basis and "waiting for video" follow within 5 s
  const NAMES_DEBOUNCE_MS = 1000;       // an unknown participant triggers one refresh per second at most
  // A dip: the last 8 s at least 0.15 below the same person's 15-45 s ago, for 2+ people and 40 % of
  // those in view. The baseline must rest on at least 20 s of that person's samples, or the first
  // seconds of a meeting (people settling, turning to the camera) read as a dip of everyone.
  const DIP = { baselineFrom: 45000, baselineTo: 15000, baselineMinMs: 20000, current: 8000, drop: 0.15, minPeople: 2, share: 0.4 };
  const ALERT_HOLD_MS = 10000;        // keep the alert up this long after the dip ends: no flapping
  // Talk time (speaking cues, media seconds) is shown as a share of the time this page has known
  // the person once it spans this long; before that a share would swing on a few seconds.
  const TALK_MIN_SPAN_S = 10;
  // bridge/confidence.py TALK_NOT_ASSESSED and NO_AUDIO: the same words as the reports
  const TALK_NOT_ASSESSED = "micro-expressions not assessed";
  const NO_AUDIO = "No audio: talking not known";
  const WHILE_TALKING = "while talking";  // in an expression cue's detail (inference/analyzer.py)
  const FATAL_CODES = { 4401: true, 4403: true, 4409: true, 4410: true };
  const AU_NAMES = {
    AU1: "inner brow raiser", AU2: "outer brow raiser", AU4: "brow lowerer", AU5: "upper lid raiser",
    AU6: "cheek raiser", AU7: "lid tightener", AU9: "nose wrinkler", AU10: "upper lip raiser",
    AU12: "lip corner puller", AU14: "dimpler", AU15: "lip corner depressor", AU17: "chin raiser",
    AU20: "lip stretcher", AU23: "lip tightener", AU24: "lip pressor", AU25: "lips part",
    AU26: "jaw drop", AU43: "eyes closed", AU45: "blink",
  };

  // --- where we are ------------------------------------------------------------------------------
  const parts = location.pathname.split("/");
  const meetingId = decodeURIComponent(parts[2] || "");
  // The token arrives in the link once; it is kept in this tab only and removed from the address
  // bar, where it would show during screen sharing and in the history (docs/privacy.md).
  const token = (() => {
    const key = `microcue-presenter-${meetingId}`;
    const fromUrl = new URLSearchParams(location.search).get("token");
    if (fromUrl) {
      try { sessionStorage.setItem(key, fromUrl); } catch (e) { /* storage off: this load still works */ }
      history.replaceState(null, "", location.pathname);
      return fromUrl;
    }
    try { return sessionStorage.getItem(key) || ""; } catch (e) { return ""; }
  })();
  const $ = (id) => document.getElementById(id);

  const state = {
    people: new Map(),      // participant id -> person
    names: new Map(),       // participant id -> {display_name, consent, left}
    policy: null,
    room: [],               // [{at, value}]
    feedCount: 0,
    skipped: 0,
    lastMessageAt: 0,
    lastCueAt: 0,
    media: null,            // {t, at}: the newest cue's media time and when it arrived (the meeting clock)
    ended: false,
    alertSince: 0,
    alertClearAt: 0,
  };

  // --- helpers ---------------------------------------------------------------------------------------
  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }
  function pct(v) { return Math.round(clamp(v, 0, 1) * 100) + "%"; }
  function mmss(seconds) {
    if (seconds == null || !isFinite(seconds)) return "";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
  }
  function sentimentWord(v) {
    if (v > 0.25) return ["positive", "positive"];
    if (v < -0.25) return ["negative", "negative"];
    return ["neutral", "neutral"];
  }
  function capital(s) { return s ? s.charAt(0).toUpperCase() + s.slice(1) : s; }
  function auTitle(au) {
    const m = /^(AU\d+)([LR]?)$/.exec(au);
    if (!m) return au;
    const side = m[2] === "L" ? " (left)" : m[2] === "R" ? " (right)" : "";
    return (AU_NAMES[m[1]] || "action unit") + side;
  }
  function emotionsAllowed() { return !state.policy || state.policy.emotions_allowed !== false; }

  // --- canvas charts ---------------------------------------------------------------------------
  function sizeCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { ctx, w, h };
  }

  function drawLine(canvas, points, opts) {
    // points: [{x in 0..1, y in lo..hi, or null for a gap}]; data-points says how many it drew
    const { ctx, w, h } = sizeCanvas(canvas);
    ctx.clearRect(0, 0, w, h);
    const pad = 4, lo = opts.lo, hi = opts.hi;
    const py = (v) => pad + (h - 2 * pad) * (1 - (clamp(v, lo, hi) - lo) / (hi - lo));
    const px = (x) => pad + (w - 2 * pad) * clamp(x, 0, 1);
    if (opts.midline !== undefined) {
      ctx.strokeStyle = "#e3dfd8"; ctx.lineWidth = 1; ctx.setLineDash([3, 4]);
      ctx.beginPath(); ctx.moveTo(0, py(opts.midline)); ctx.lineTo(w, py(opts.midline)); ctx.stroke();
      ctx.setLineDash([]);
    }
    // Runs of known values; a gap (nobody in view) splits the line.
    const runs = [];
    let run = [];
    for (const p of points) {
      if (p.y == null) { if (run.length) runs.push(run); run = []; } else run.push(p);
    }
    if (run.length) runs.push(run);
    let drawn = 0;
    for (const r of runs) {
      drawn += r.length;
      if (r.length === 1) {  // a single value: a dot wholly inside the chart, not half cut off at its edge
        ctx.fillStyle = opts.color;
        ctx.beginPath(); ctx.arc(Math.min(px(r[0].x), w - pad), py(r[0].y), 3, 0, Math.PI * 2); ctx.fill();
        continue;
      }
      if (opts.fill) {
        ctx.fillStyle = opts.fill;
        ctx.beginPath(); ctx.moveTo(px(r[0].x), h);
        for (const p of r) ctx.lineTo(px(p.x), py(p.y));
        ctx.lineTo(px(r[r.length - 1].x), h); ctx.closePath(); ctx.fill();
      }
      ctx.strokeStyle = opts.color; ctx.lineWidth = opts.width || 2; ctx.lineJoin = "round";
      ctx.beginPath();
      r.forEach((p, i) => (i ? ctx.lineTo(px(p.x), py(p.y)) : ctx.moveTo(px(p.x), py(p.y))));
      ctx.stroke();
    }
    canvas.dataset.points = String(drawn);
  }

  function sparkPoints(series, now) {
    // series: [{at (wall clock ms), v}]. The last minute; while a meeting is younger than that, its
    // whole history fills the width. A value holds until the next one (the streams speak on change),
    // so each is drawn as a step and the last one runs on to now while its stream is alive.
    if (!series.length) return [];
    const last = series[series.length - 1];
    const end = now - last.at < HOLD_MS ? now : last.at;
    const span = clamp(end - series[0].at, SPARK_MIN_WINDOW_S * 1000, SPARK_WINDOW_S * 1000);
    const x = (at) => 1 - (end - at) / span;
    const pts = [];
    let before = null;
    for (const p of series) {
      if (p.at < end - span) { before = p; continue; }
      if (pts.length) pts.push({ x: x(p.at), y: pts[pts.length - 1].y });
      else if (before) pts.push({ x: 0, y: before.v }, { x: x(p.at), y: before.v });
      pts.push({ x: x(p.at), y: p.v });
    }
    if (!pts.length && before) pts.push({ x: 0, y: before.v });
    if (pts.length && end > last.at) pts.push({ x: 1, y: pts[pts.length - 1].y });
    return pts;
  }

  // --- participants ------------------------------------------------------------------------------
  function person(id) {
    let p = state.people.get(id);
    if (p) return p;
    const node = $("tile-template").content.firstElementChild.cloneNode(true);
    p = {
      id, node,
      name: node.querySelector(".name"),
      face: node.querySelector(".face"),
      faceLabel: node.querySelector(".face-label"),
      metrics: node.querySelector(".metrics"),
      declined: node.querySelector(".declined-note"),
      consent: node.querySelector(".consent"),
      engValue: node.querySelector(".engagement .metric-value"),
      engSpark: node.querySelector(".engagement .spark"),
      sentRow: node.querySelector(".sentiment"),
      sentValue: node.querySelector(".sentiment .metric-value"),
      sentWord: node.querySelector(".sentiment .word"),
      sentNum: node.querySelector(".sentiment .num"),
      sentSpark: node.querySelector(".sentiment .spark"),
      attention: node.querySelector(".attention"),
      speaking: node.querySelector(".speaking"),
      talkLine: node.querySelector(".talk-line"),
      role: node.querySelector("select.role"),
      engagement: [], sentiment: [], heldWall: [], seen: {},
      // talk from speaking cues, media seconds: closed segments summed, the open one since talkFrom
      talkS: 0, talkFrom: null, knownFrom: null,
      dirty: true,
    };
    node.dataset.participant = id;
    p.role.addEventListener("change", () => setRole(p, p.role.value));
    state.people.set(id, p);
    if (!state.names.has(id)) refreshNamesSoon();
    $("tiles").appendChild(node);
    $("tiles-empty").hidden = true;
    applyName(p);
    updateCount();
    return p;
  }

  function applyName(p) {
    const info = state.names.get(p.id) || {};
    p.name.textContent = info.display_name || "Participant " + p.id;
    p.name.title = p.id;
    if (info.role && document.activeElement !== p.role) p.role.value = info.role === "presenter" ? "participant" : info.role;
    if (info.consent === true && info.consent_basis === "announced") {
      // an external meeting: the bot announced itself by its name; nobody was asked
      p.consent.textContent = "announced by the bot, not asked"; p.consent.className = "consent chip announced";
    } else if (info.consent === true) { p.consent.textContent = "consented"; p.consent.className = "consent chip ok"; }
    else if (info.consent === false) { p.consent.textContent = "declined"; p.consent.className = "consent chip no"; }
    else { p.consent.textContent = "consent pending"; p.consent.className = "consent chip"; }
    p.node.classList.toggle("declined", info.consent === false);
    p.metrics.hidden = info.consent === false;
    p.dirty = true;
    p.declined.hidden = info.consent !== false;
    p.node.classList.toggle("away", !!info.left);
  }

  function updateCount() {
    const n = state.people.size;
    $("people-count").textContent = n ? `${n} ${n === 1 ? "person" : "people"}` : "";
  }

  function push(series, point) {
    series.push(point);
    if (series.length > HISTORY_MAX) series.splice(0, series.length - HISTORY_MAX);
  }

  // The meeting's media time now: the newest cue's time plus what has passed since it arrived.
  function mediaNow() {
    return state.media ? state.media.t + (Date.now() - state.media.at) / 1000 : null;
  }

  function noteMediaTime(t) {
    if (typeof t === "number" && isFinite(t) && (!state.media || t >= mediaNow())) state.media = { t, at: Date.now() };
  }

  function applySpeaking(p, cue) {
    if (cue.value >= 0.5) {
      if (p.talkFrom == null) p.talkFrom = Math.max(cue.t, p.knownFrom);
    } else if (p.talkFrom != null) {
      p.talkS += Math.max(0, cue.t - p.talkFrom);
      p.talkFrom = null;
    }
  }

  // "Talking 35%: micro-expressions not assessed": the share of the time this page has known the
  // person (media time) that they talked; talk before the page opened is not counted.
  function talkText(p) {
    const info = state.names.get(p.id) || {};
    if (info.audio && info.audio !== "receiving" && !p.talkS && p.talkFrom == null) return [NO_AUDIO, null];
    const now = mediaNow();
    if (now == null || p.knownFrom == null) return ["", null];
    const talk = p.talkS + (p.talkFrom != null ? Math.max(0, now - p.talkFrom) : 0);
    const span = now - p.knownFrom;
    if (span < TALK_MIN_SPAN_S) return [p.talkFrom != null ? `Talking now: ${TALK_NOT_ASSESSED}` : "", null];
    if (talk <= 0) return ["Not heard talking: micro-expressions assessed", null];
    return [`: ${TALK_NOT_ASSESSED}`, `Talking ${pct(talk / span)}`];
  }

  function renderTalk(p) {
    const [text, share] = talkText(p);
    p.talkLine.textContent = "";
    if (share) {
      const b = document.createElement("span");
      b.className = "share"; b.textContent = share;
      p.talkLine.append(b, text);
    } else {
      p.talkLine.textContent = text;
    }
  }

  function applyCue(cue, live) {
    if (!cue || !cue.participant_id) return;
    const now = Date.now();
    if (live) noteMediaTime(cue.t);
    if (cue.type === "micro_expression" || cue.type === "macro_expression") {
      if (emotionsAllowed()) addFeed(cue, live);
      person(cue.participant_id);
      return;
    }
    const p = person(cue.participant_id);
    // A reconnect's snapshot repeats the latest cues: take each (type, t) once.
    if (p.seen[cue.type] === cue.t) return;
    p.seen[cue.type] = cue.t;
    if (p.knownFrom == null) p.knownFrom = live ? cue.t : mediaNow() != null ? mediaNow() : cue.t;
    switch (cue.type) {
      case "engagement":
        push(p.engagement, { at: now, v: cue.value });
        if (!state.room.length && !firstSample) {  // the room line starts with the first value, not 2 s later
          firstSample = setTimeout(() => { firstSample = 0; sampleRoom(); }, 0);
        }
        break;
      case "sentiment":
        push(p.sentiment, { at: now, v: cue.value });
        break;
      case "presence":
        p.present = cue.value >= 0.5;
        break;
      case "attention":
        p.attentionValue = cue.value;
        break;
      case "speaking":
        p.speakingNow = cue.value >= 0.5;
        applySpeaking(p, cue);
        break;
      default:
        return;
    }
    p.dirty = true;
    state.lastCueAt = now;
  }

  function renderPerson(p) {
    const e = p.engagement[p.engagement.length - 1];
    p.engValue.textContent = e ? pct(e.v) : "–";
    const now = Date.now();
    drawLine(p.engSpark, sparkPoints(p.engagement, now), { lo: 0, hi: 1, color: "#2f7d78", fill: "rgba(47,125,120,0.10)" });
    const allowed = emotionsAllowed();
    p.sentRow.hidden = !allowed;
    if (allowed) {
      const s = p.sentiment[p.sentiment.length - 1];
      if (s) {
        const [word, cls] = sentimentWord(s.v);
        p.sentWord.textContent = capital(word);
        p.sentNum.textContent = `${s.v >= 0 ? "+" : "−"}${Math.abs(s.v).toFixed(2)}`;
        p.sentValue.className = "metric-value " + cls;
      }
      drawLine(p.sentSpark, sparkPoints(p.sentiment, now), { lo: -1, hi: 1, color: "#8a5a7a", midline: 0 });
    }
    p.face.className = "face " + (p.present === true ? "present" : p.present === false ? "absent" : "");
    p.faceLabel.textContent = p.present === true ? "face in view" : p.present === false ? "no face in view" : "no signal yet";
    const info = state.names.get(p.id) || {};
    if (info.video === "waiting for video" && p.present !== true) p.faceLabel.textContent = "waiting for video";
    if (info.consent === false) p.faceLabel.textContent = "not analysed";
    p.attention.textContent = p.attentionValue != null ? `Attention ${pct(p.attentionValue)}` : "";
    p.speaking.hidden = !p.speakingNow;
    renderTalk(p);
    p.dirty = false;
  }

  // --- expression feed -------------------------------------------------------------------------------
  function addFeed(cue, live) {
    const key = `${cue.participant_id}:${cue.seq}:${cue.t}`;
    const feed = $("feed");
    for (const existing of feed.children) if (existing.dataset.key === key) return;
    const node = $("feed-template").content.firstElementChild.cloneNode(true);
    node.dataset.key = key;
    // No emotion: the AU prototype and the CNN disagreed (inference/expressions.py), so none is named.
    const emotion = cue.emotion ? capital(cue.emotion) : "Unclear";
    node.querySelector(".emotion").textContent = `${emotion} signal`;
    const kind = node.querySelector(".kind");
    const ms = cue.offset_s != null && cue.onset_s != null ? Math.round((cue.offset_s - cue.onset_s) * 1000) : null;
    const talking = (cue.detail || "").indexOf(WHILE_TALKING) >= 0;
    kind.textContent = (cue.type === "micro_expression" ? "micro" : "expression") + (ms ? ` · ${ms} ms` : "") +
      (talking ? ` · ${WHILE_TALKING}` : "");
    node.classList.toggle("while-talking", talking);
    const info = state.names.get(cue.participant_id) || {};
    node.querySelector(".feed-who").textContent = info.display_name || "Participant " + cue.participant_id;
    const aus = node.querySelector(".aus");
    for (const au of cue.aus || []) {
      const chip = document.createElement("span");
      chip.className = "au"; chip.textContent = au; chip.title = auTitle(au);
      aus.appendChild(chip);
    }
    node.querySelector(".time").textContent = `at ${mmss(cue.apex_s != null ? cue.apex_s : cue.t)}`;
    const conf = cue.confidence != null ? clamp(cue.confidence, 0, 1) : null;
    node.querySelector(".pct").textContent = conf != null ? `confidence ${Math.round(conf * 100)}%` : "confidence n/a";
    node.querySelector(".fill").style.width = conf != null ? `${Math.round(conf * 100)}%` : "0";
    if (!live) node.style.animation = "none";
    feed.insertBefore(node, feed.firstChild);
    while (feed.children.length > FEED_MAX) feed.removeChild(feed.lastChild);
    state.feedCount += 1;
    $("feed-empty").hidden = true;
    $("feed-count").textContent = `${state.feedCount} so far`;
  }

  // --- meeting level: room line and dips --------------------------------------------------------------
  let firstSample = 0;

  // A person's engagement now: their latest value while their face is in view and their stream is
  // alive (an unchanged value is repeated every 30 s, so a value is not stale merely by being old).
  function currentEngagement(p, now) {
    const info = state.names.get(p.id) || {};
    if (p.present === false || info.left || info.consent === false) return null;
    const last = p.engagement[p.engagement.length - 1];
    return last && now - last.at < HOLD_MS ? last.v : null;
  }

  function sampleRoom() {
    const now = Date.now();
    const values = [];
    for (const p of state.people.values()) {
      const v = currentEngagement(p, now);
      if (v != null) { values.push(v); push(p.heldWall, { at: now, v }); }
      p.dirty = true;  // held values run on to now on the sparklines
    }
    const mean = values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    if (mean != null || state.room.length) state.room.push({ at: now, value: mean });  // null: a gap
    $("room-value").textContent = mean != null ? pct(mean) : "–";
    $("room-in-view").textContent = state.people.size ? `${values.length} of ${state.people.size} in view` : "";
    state.room = state.room.filter((s) => now - s.at <= ROOM_WINDOW_MS);
    drawRoom();
    checkDips(now);
  }

  function drawRoom() {
    const now = Date.now();
    const span = state.room.length ? clamp(now - state.room[0].at, ROOM_MIN_WINDOW_MS, ROOM_WINDOW_MS) : ROOM_WINDOW_MS;
    $("room-axis-start").textContent = span >= ROOM_WINDOW_MS ? "5 min ago" : `${Math.round(span / 60000) || 1} min ago`;
    const pts = state.room.map((s) => ({ x: 1 - (now - s.at) / span, y: s.value }));
    drawLine($("room-chart"), pts, { lo: 0, hi: 1, color: "#2f7d78", fill: "rgba(47,125,120,0.12)", width: 2.5, midline: 0.5 });
  }

  function mean(series, from, to) {
    let sum = 0, n = 0;
    for (const p of series) if (p.at >= from && p.at <= to) { sum += p.v; n += 1; }
    return n ? sum / n : null;
  }

  function checkDips(now) {
    let active = 0;
    const dipping = [];
    for (const p of state.people.values()) {
      if (currentEngagement(p, now) == null) { p.node.classList.remove("dipping"); continue; }
      active += 1;
      // over the room samples of held values: a steady person sends no cue, yet is still there
      const settled = p.heldWall.length && p.heldWall[0].at <= now - DIP.baselineTo - DIP.baselineMinMs;
      const base = settled ? mean(p.heldWall, now - DIP.baselineFrom, now - DIP.baselineTo) : null;
      const cur = mean(p.heldWall, now - DIP.current, now);
      const dips = base != null && cur != null && base - cur >= DIP.drop;
      p.node.classList.toggle("dipping", dips);
      if (dips) dipping.push(p);
    }
    const alert = $("alert");
    const together = dipping.length >= DIP.minPeople && dipping.length >= Math.ceil(DIP.share * active);
    if (together) {
      if (!state.alertSince) state.alertSince = now;
      state.alertClearAt = now + ALERT_HOLD_MS;
      const names = dipping.slice(0, 3).map((p) => (state.names.get(p.id) || {}).display_name || p.id);
      const more = dipping.length > 3 ? ` and ${dipping.length - 3} more` : "";
      alert.innerHTML = "";
      const strong = document.createElement("strong");
      strong.textContent = `Engagement dipped for ${dipping.length} of ${active} people`;
      const detail = document.createElement("span");
      detail.textContent = `${names.join(", ")}${more} · in the last ${Math.round(DIP.current / 1000)} s. Maybe a good moment for a question or a pause.`;
      alert.append(strong, detail);
      alert.hidden = false;
    } else if (state.alertSince && now > state.alertClearAt) {
      state.alertSince = 0;
      alert.hidden = true;
    }
  }

  // --- snapshot and policy ------------------------------------------------------------------------------
  function applyPolicy(policy) {
    state.policy = policy;
    const banner = $("policy-banner");
    if (policy && policy.notice) {
      banner.textContent = policy.notice;
      banner.classList.toggle("override", !!policy.overridden);
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
    const allowed = emotionsAllowed();
    $("feed-caveat").hidden = !allowed;
    $("feed-off").hidden = allowed;
    $("feed").hidden = !allowed;
    $("feed-empty").hidden = !allowed || state.feedCount > 0;
    $("feed-heading").textContent = allowed ? "Expression signals" : "Expression signals (off)";
  }

  function applySnapshot(snap) {
    applyPolicy(snap.policy);
    // the meeting clock from the newest cue the snapshot holds, before anyone's talk is counted
    for (const row of snap.participants || []) {
      for (const c of Object.values(row.latest || {})) noteMediaTime(c.t);
    }
    for (const row of snap.participants || []) {
      const known = state.names.get(row.participant_id) || {};  // keeps consent_basis and video from the list
      state.names.set(row.participant_id,
        { ...known, display_name: row.display_name, role: row.role, consent: row.consent, left: row.left });
      const p = person(row.participant_id);
      applyName(p);
      const latest = row.latest || {};
      for (const type of ["presence", "attention", "speaking", "sentiment", "engagement"]) {
        if (latest[type]) applyCue(latest[type], false);
      }
    }
    for (const cue of snap.recent || []) addFeed(cue, false);
    if (snap.hidden) showHidden(snap.hidden.count, snap.hidden.min_confidence);
    if (snap.coaching !== undefined) applyCoaching(snap.coaching);
    if (snap.ended) showEnded();
  }

  // Signals under MICROCUE_MIN_CONFIDENCE never reach the page; the presenter is told how many.
  function showHidden(count, floor) {
    const note = $("feed-hidden");
    note.hidden = !count || !emotionsAllowed();
    note.textContent = `${count} signal${count === 1 ? "" : "s"} below ${Math.round((floor || 0) * 100)}% confidence hidden`;
  }

  function showEnded() {
    state.ended = true;
    $("ended-banner").hidden = false;
  }

  // --- connection ----------------------------------------------------------------------------------------
  let socket = null;
  let attempt = 0;
  let retryTimer = 0;
  let countdownTimer = 0;

  function setConnection(kind, text) {
    const el = $("connection");
    el.className = "connection " + kind;
    el.querySelector(".label").textContent = text;
  }

  function fatal(message) {
    const banner = $("fatal-banner");
    banner.textContent = message;
    banner.hidden = false;
    setConnection("down", "Not connected");
  }

  function connect() {
    clearTimeout(retryTimer); clearInterval(countdownTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws/meetings/${encodeURIComponent(meetingId)}/live?token=${encodeURIComponent(token)}`;
    setConnection(attempt ? "reconnecting" : "", attempt ? "Reconnecting…" : "Connecting…");
    const ws = new WebSocket(url);
    socket = ws;
    ws.onopen = () => { state.lastMessageAt = Date.now(); };
    ws.onmessage = (event) => {
      state.lastMessageAt = Date.now();
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      switch (msg.type) {
        case "snapshot":
          attempt = 0;
          setConnection("live", "Live");
          applySnapshot(msg);
          break;
        case "cue":
          applyCue(msg.cue, true);
          break;
        case "skipped":
          state.skipped += msg.count || 0;
          $("skipped-note").textContent = `${state.skipped} cues skipped to stay current`;
          break;
        case "hidden":
          showHidden(msg.count || 0, msg.min_confidence);
          break;
        case "meeting_ended":
          showEnded();
          break;
        case "participant": {
          const row = msg.participant;
          state.names.set(row.id, { display_name: row.display_name, role: row.role, consent: row.consent,
                                    left: !!row.left_at });
          applyName(person(row.id));
          break;
        }
        case "coaching":
          applyCoaching(msg.coaching);
          break;
        default:
          break; // "ping" and anything newer: the timestamp above is all we need
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      if (FATAL_CODES[event.code]) {
        if (event.code === 4409) { showEnded(); setConnection("closed", "Meeting ended"); return; }
        fatal(event.code === 4410 ? "This meeting was erased; its live feed is closed." :
          `The live feed refused this link: ${event.reason || "invalid token"}. Ask for a fresh dashboard link.`);
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * Math.pow(2, attempt));
    const delay = base / 2 + Math.random() * base / 2;
    attempt += 1;
    let left = Math.ceil(delay / 1000);
    setConnection("reconnecting", `Reconnecting in ${left} s…`);
    countdownTimer = setInterval(() => {
      left -= 1;
      if (left > 0) setConnection("reconnecting", `Reconnecting in ${left} s…`);
    }, 1000);
    retryTimer = setTimeout(connect, delay);
  }

  function watchdog() {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - state.lastMessageAt > SILENCE_MS) {
      socket.close(4000, "no heartbeat");   // onclose schedules the reconnect
    }
  }

  // --- meeting info and names (REST) --------------------------------------------------------------------
  async function api(path) {
    const r = await fetch(`/api/meetings/${encodeURIComponent(meetingId)}${path}`, {
      headers: { Authorization: `Bearer ${token}` }, cache: "no-store",
    });
    if (!r.ok) throw new Error(`${r.status}`);
    return r.json();
  }

  async function loadMeeting() {
    try {
      const m = await api("");
      $("meeting-title").textContent = m.title;
      document.title = `MicroCue · ${m.title}`;
      $("meeting-meta").textContent = `${capital(m.kind)} · ${m.context}`;
      if (m.ended_at) showEnded();
      if (!state.policy) applyPolicy(m.policy);
    } catch (e) { /* the websocket reports auth problems; the title just stays generic */ }
  }

  async function loadParticipants() {
    try {
      for (const row of await api("/participants")) {
        state.names.set(row.id, { display_name: row.display_name, role: row.role, consent: row.consent,
                                  left: !!row.left_at, consent_basis: row.consent_basis, video: row.video,
                                  audio: row.audio });
        const p = state.people.get(row.id);
        if (p) applyName(p); else person(row.id);
      }
    } catch (e) { /* retried on the next refresh */ }
  }

  // --- roles and sales coaching --------------------------------------------------------------------------
  async function setRole(p, role) {
    p.role.disabled = true;
    try {
      const r = await fetch(`/api/meetings/${encodeURIComponent(meetingId)}/participants/${encodeURIComponent(p.id)}`, {
        method: "PATCH",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ role }),
      });
      if (!r.ok) throw new Error(`${r.status}`);
      const row = await r.json();
      state.names.set(row.id, { display_name: row.display_name, role: row.role, consent: row.consent,
                                left: !!row.left_at });
      p.node.dataset.role = row.role;
    } catch (e) {
      const info = state.names.get(p.id) || {};
      p.role.value = info.role || "participant"; // refused: show the role that stands
    } finally {
      p.role.disabled = false;
      applyName(p);
    }
  }

  function nameOf(id) { return (state.names.get(id) || {}).display_name || "Participant " + id; }

  function applyCoaching(c) {
    const panel = $("coaching-panel");
    panel.hidden = !c;
    if (!c) return;
    const tips = $("coaching-tips");
    tips.textContent = "";
    if (!c.available) {
      $("coaching-roles").textContent = capital(c.reason) + ": set them on the tiles.";
      $("coaching-figure").textContent = "";
      return;
    }
    $("coaching-roles").textContent =
      `Rep: ${c.rep_ids.map(nameOf).join(", ")} · buyer: ${c.buyer_ids.map(nameOf).join(", ")}`;
    $("coaching-figure").textContent = c.talk_to_listen ? `Rep talk : listen ${c.talk_to_listen}` : "";
    for (const tip of (c.tips || []).slice(0, 3)) {
      const li = document.createElement("li");
      li.textContent = tip.text;
      tips.appendChild(li);
    }
  }

  let namesTimer = 0;
  function refreshNamesSoon() {
    // Someone new sent a cue before the periodic refresh: fetch names and consent now (once per burst).
    if (!namesTimer) namesTimer = setTimeout(() => { namesTimer = 0; loadParticipants(); }, NAMES_DEBOUNCE_MS);
  }

  // --- render loop -------------------------------------------------------------------------------------------
  function frame() {
    for (const p of state.people.values()) if (p.dirty) renderPerson(p);
    if (state.lastCueAt) {
      const ago = Math.round((Date.now() - state.lastCueAt) / 1000);
      $("last-update").textContent = ago < 2 ? "last signal just now" : `last signal ${ago} s ago`;
    }
    window.requestAnimationFrame(frame);
  }

  window.addEventListener("resize", () => { for (const p of state.people.values()) p.dirty = true; drawRoom(); });

  if (!meetingId || !token) {
    fatal("This dashboard link is incomplete: it needs the meeting id and ?token=.");
    return;
  }
  applyPolicy(null);
  loadMeeting();
  loadParticipants();
  connect();
  setInterval(sampleRoom, ROOM_SAMPLE_MS);
  setInterval(watchdog, 5000);
  setInterval(loadParticipants, PARTICIPANTS_REFRESH_MS);
  window.requestAnimationFrame(frame);
})();

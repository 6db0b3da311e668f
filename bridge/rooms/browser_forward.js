// MicroCue browser bot: runs in the meeting page before its own scripts (Playwright init script).
//
// It wraps RTCPeerConnection so that every remote video track the page receives (with the audio
// that came with it) is forwarded, as the same track object, to MicroCue over WebRTC: one WHIP
// publish (RFC 9725) per remote participant, named by the display name the page shows next to
// that video. No frame is ever read into JavaScript: the browser re-sends the encoded media.
// The bot's own microphone is muted (its audio tracks are disabled as getUserMedia hands them out).
//
// Config (prepended by bridge/rooms/browser.py): window.__MICROCUE_BOT__ =
//   {whip: "http://host/whip/<meeting>", token: "<join token>", tile: "<css>", name: "<css>",
//    nameWaitMs: 15000, botName: "MicroCue notetaker"}
(() => {
  "use strict";
  const cfg = window.__MICROCUE_BOT__;
  if (!cfg || window.__microcue) return;
  const Native = window.RTCPeerConnection;
  // Keyed by the track object: ids repeat across connections (Janus names every subscribed video
  // "janusv0"), the objects never do.
  const forwards = new Map();   // remote video track -> {pc, resource, name, closed}
  const log = (...args) => console.info("[microcue]", ...args);
  const state = { forwarded: [], left: [], errors: [] };
  window.__microcue = state;

  // --- the bot's own microphone stays muted ---------------------------------------------------
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = async (constraints) => {
      const stream = await gum(constraints);
      for (const t of stream.getAudioTracks()) t.enabled = false;
      return stream;
    };
  }

  // --- who is this video? -----------------------------------------------------------------------
  function videoShowing(track) {
    for (const v of document.querySelectorAll("video")) {
      const src = v.srcObject;
      if (src && typeof src.getTracks === "function" && src.getTracks().includes(track)) return v;
    }
    return null;
  }

  function nameNear(video) {
    const tile = cfg.tile ? video.closest(cfg.tile) : video.parentElement;
    const el = tile && cfg.name ? tile.querySelector(cfg.name) : null;
    const text = el ? (el.textContent || "").trim() : "";
    return text && text !== cfg.botName ? text : "";
  }

  async function displayName(track) {
    const until = Date.now() + (cfg.nameWaitMs || 15000);
    while (Date.now() < until) {
      const video = videoShowing(track);
      const name = video ? nameNear(video) : "";
      if (name) return name;
      await new Promise((r) => setTimeout(r, 250));
    }
    return "";
  }

  // --- forwarding ---------------------------------------------------------------------------------
  async function whenGathered(pc) {
    if (pc.iceGatheringState === "complete") return;
    await new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 5000); // host candidates come at once; never hang on a slow one
    });
  }

  async function forward(video, audio) {
    if (forwards.has(video)) return;
    const entry = { pc: null, resource: null, name: "", closed: false };
    forwards.set(video, entry);
    const name = await displayName(video);
    if (entry.closed) return;
    entry.name = name || "Participant";
    const pc = new Native();
    entry.pc = pc;
    pc.addTransceiver(video, { direction: "sendonly" });
    for (const a of audio) pc.addTransceiver(a, { direction: "sendonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await whenGathered(pc);
    const url = `${cfg.whip}?consent=yes&name=${encodeURIComponent(entry.name)}`;
    const r = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${cfg.token}` },
      body: pc.localDescription.sdp,
    });
    if (r.status !== 201) throw new Error(`WHIP publish refused: ${r.status} ${await r.text()}`);
    entry.resource = new URL(r.headers.get("Location"), cfg.whip).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    state.forwarded.push(entry.name);
    log("forwarding", entry.name);
    if (entry.closed) await stop(video); // left while we were connecting
  }

  async function stop(track) {
    const entry = forwards.get(track);
    if (!entry) return;
    entry.closed = true;
    if (!entry.resource) return; // forward() finishes the job once it has a resource
    forwards.delete(track);
    if (entry.pc) entry.pc.close();
    state.left.push(entry.name);
    log("stopped forwarding", entry.name);
    await fetch(entry.resource, {
      method: "DELETE", headers: { Authorization: `Bearer ${cfg.token}` }, keepalive: true,
    }).catch(() => {});
  }

  state.stopAll = async () => { await Promise.all([...forwards.keys()].map(stop)); };

  // --- the wrapper ------------------------------------------------------------------------------------
  class Wrapped extends Native {
    constructor(...args) {
      super(...args);
      const mine = [];   // remote video tracks received on this connection
      const audio = [];
      this.addEventListener("track", (event) => {
        const track = event.track;
        if (track.kind === "audio") { audio.push(track); return; }
        if (track.kind !== "video") return;
        mine.push(track);
        track.addEventListener("ended", () => stop(track));
        // audio of the same participant usually arrives in the same negotiation: wait a moment
        setTimeout(() => {
          const same = audio.filter((a) => a.readyState === "live");
          forward(track, same).catch((e) => { state.errors.push(String(e)); forwards.delete(track); });
        }, 500);
      });
      const end = () => { for (const t of mine) stop(t); };
      this.addEventListener("connectionstatechange", () => {
        if (this.connectionState === "closed" || this.connectionState === "failed") end();
      });
      const close = this.close.bind(this);
      this.close = () => { end(); close(); };  // the page hung up on this participant
    }
  }
  window.RTCPeerConnection = Wrapped;
  if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = Wrapped;
})();

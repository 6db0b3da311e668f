/* WebRTC for the join page: publishes camera and microphone to the MicroCue bridge of a
 * built-in room and shows the other participants it relays. Protocol: web/ws/signal.py.
 *
 * Two connections, each offered once by this page and never renegotiated (the SFU split):
 *  - "publish" sends this camera and microphone up;
 *  - "subscribe" has fixed receive slots; the bridge says who is in which slot ("slots"
 *    messages, by mid) and changes that as people come and go, without new SDP.
 * The page is the only side that ever offers, so offers cannot collide (no glare). */
(function () {
  "use strict";
  if (window.MicroCueJoin) return; // a page (or a test) that brings its own hook keeps it
  const RECEIVE_SLOTS = 7;  // the rest of a full room (bridge/rooms/builtin.py MAX_PARTICIPANTS)
  const ICE_WAIT_MS = 3000;

  function wsUrl(path, token) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${path}?token=${encodeURIComponent(token)}`;
  }

  function remoteArea() {
    let area = document.getElementById("remote-media");
    if (!area) {
      area = document.createElement("section");
      area.id = "remote-media";
      area.className = "remote-media";
      document.querySelector("main").appendChild(area);
    }
    return area;
  }

  /* One element per receive slot, hidden while nobody is in it. */
  function slotElement(mid, track) {
    const area = remoteArea();
    const figure = document.createElement("figure");
    figure.className = "remote-slot";
    figure.dataset.mid = mid;
    figure.hidden = true;
    const el = document.createElement(track.kind === "video" ? "video" : "audio");
    el.autoplay = true; el.playsInline = true;
    el.srcObject = new MediaStream([track]);
    if (track.kind === "video") {
      el.width = 320; el.muted = true;
      const caption = document.createElement("figcaption");
      figure.append(el, caption);
    } else {
      figure.append(el);
      figure.classList.add("audio-slot");
    }
    area.appendChild(figure);
    return figure;
  }

  function showSlots(slots) {
    const byMid = new Map(slots.map((s) => [s.mid, s]));
    for (const figure of document.querySelectorAll("#remote-media figure.remote-slot")) {
      const s = byMid.get(figure.dataset.mid);
      figure.dataset.participant = s ? s.participant_id : "";
      figure.dataset.name = s ? (s.name || "") : "";
      const caption = figure.querySelector("figcaption");
      if (caption) caption.textContent = s ? (s.name || "Participant") : "";
      figure.hidden = !s || figure.classList.contains("audio-slot");
      // chromium pauses a muted autoplaying video while it is hidden; play it once it is shown
      const media = figure.querySelector("video, audio");
      if (s && media && media.paused) media.play().catch(() => {});
    }
  }

  async function gathered(pc) {
    // aiortc takes a complete offer: wait for ICE gathering (host candidates only, quick)
    if (pc.iceGatheringState === "complete") return;
    await new Promise((resolve) => {
      pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
      setTimeout(resolve, ICE_WAIT_MS);
    });
  }

  window.MicroCueJoin = {
    async start({ meetingId, token, displayName, consent, signalUrl }) {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
      const ws = new WebSocket(wsUrl(signalUrl || `/ws/rooms/${encodeURIComponent(meetingId)}/signal`, token));
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("cannot reach the bridge")); });

      // one reader for the whole session: answers resolve their offer, slots update the tiles
      const waiting = new Map();  // "welcome" | "joined" | "answer:publish" | "answer:subscribe" -> {resolve, reject}
      let slots = [];
      const negotiations = { publish: 0, subscribe: 0 };
      function expect(key) { return new Promise((resolve, reject) => waiting.set(key, { resolve, reject })); }
      function failAll(err) { for (const w of waiting.values()) w.reject(err); waiting.clear(); }
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        const key = m.type === "answer" ? `answer:${m.pc}` : m.type;
        if (m.type === "slots") { slots = m.slots; showSlots(slots); return; }
        if (m.type === "error") { failAll(new Error(m.message)); return; }
        const w = waiting.get(key);
        if (w) { waiting.delete(key); w.resolve(m); }
      };
      ws.onclose = (e) => {
        failAll(new Error(e.reason || `the bridge closed the connection (${e.code})`));
        const s = document.getElementById("status");
        if (s && window.MicroCueJoin.session) { s.textContent = "Disconnected from the meeting."; s.hidden = false; }
      };

      const welcome = await expect("welcome");
      const joinedAck = expect("joined");
      ws.send(JSON.stringify({ type: "join", name: displayName || "Participant", consent: !!consent }));
      await joinedAck;

      async function offer(which, pc) {
        await pc.setLocalDescription(await pc.createOffer());
        await gathered(pc);
        const reply = expect(`answer:${which}`);
        ws.send(JSON.stringify({ type: "offer", pc: which, sdp: pc.localDescription.sdp }));
        const answer = await reply;
        await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
        negotiations[which] += 1;
      }

      const up = new RTCPeerConnection({ iceServers: [] });
      for (const track of media.getTracks()) {
        const { sender } = up.addTransceiver(track, { direction: "sendonly", streams: [media] });
        if (track.kind !== "video") continue;
        // Under CPU or bandwidth pressure chromium lowers the resolution by default, and each
        // change of picture size restarts the face tracking; lowering the frame rate instead
        // costs the analysis nothing (it samples at 15 fps or less).
        track.contentHint = "detail";
        const params = sender.getParameters();
        params.degradationPreference = "maintain-resolution";
        await sender.setParameters(params).catch((err) => console.warn("degradationPreference not set", err));
      }
      up.onnegotiationneeded = null;  // never renegotiated: a camera change uses replaceTrack
      await offer("publish", up);

      const down = new RTCPeerConnection({ iceServers: [] });
      for (let i = 0; i < RECEIVE_SLOTS; i++) {  // room for the others' camera and microphone
        down.addTransceiver("video", { direction: "recvonly" });
        down.addTransceiver("audio", { direction: "recvonly" });
      }
      down.ontrack = (e) => { slotElement(e.transceiver.mid, e.track); showSlots(slots); };
      await offer("subscribe", down);

      window.MicroCueJoin.session = {
        ws, up, down, media, negotiations, participantId: welcome.participant_id,
        get slots() { return slots; },
      };
      const status = document.getElementById("status");
      status.textContent = `${welcome.bot} You are in the meeting${consent ? "" : " (not analysed)"}.`;
      status.hidden = false;
      return welcome.participant_id;
    },
  };
})();

/* WebRTC for the join page: publishes camera and microphone to the MicroCue bridge of a
 * built-in room and shows the other participants it relays. Protocol: web/ws/signal.py.
 *
 * Two connections, each offered once by this page and never renegotiated (the SFU split):
 *  - "publish" sends this camera and microphone up;
 *  - "subscribe" has fixed receive slots; the bridge says who is in which slot ("slots"
 *    messages, by mid) and changes that as people come and go, without new SDP.
 * The page is the only side that ever offers, so offers cannot collide (no glare).
 * When the bridge closes with 1012 the page opens a new signalling connection, rejoins as the
 * same participant ("resume") and offers both connections again; the camera stays open. */
(function () {
  "use strict";
  if (window.MicroCueJoin) return; // a page (or a test) that brings its own hook keeps it
  const RECEIVE_SLOTS = 7;  // the rest of a full room (bridge/rooms/builtin.py MAX_PARTICIPANTS)
  const ICE_WAIT_MS = 3000;
  // 1012 "service restart" (RFC 6455 7.4.1): the service stopped or a bridge worker handed the
  // room over (web/ws/signal.py). The page reconnects and rejoins as the same participant, with
  // the resume pair the bridge gave at the first join; a failover takes up to ~15 s.
  const CLOSE_RESTART = 1012;
  // The bridge reads faces well from 600 kbit/s (docs/benchmarks.md, spotting by codec and
  // bitrate); more only costs the participant's uplink and the bridge's receive path, whose
  // loss-based estimate is all the browser gets (bridge/media/peers.py without_receive_estimate).
  const MAX_VIDEO_BITRATE = 600000;
  const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 4000];  // then every 4 s
  const RECONNECT_FOR_MS = 60000;
  // Refusals that another try cannot change (token refused, meeting ended or erased): stop.
  const FINAL_CLOSE_CODES = new Set([4401, 4403, 4409, 4410]);
  const ATTEMPT_TIMEOUT_MS = 15000;  // one reconnect handshake (the first join may load models: no limit)

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

  function setStatus(text) {
    const s = document.getElementById("status");
    if (s) { s.textContent = text; s.hidden = !text; }
  }

  /* One signalling connection and its two peer connections, from "welcome" to both answers.
   * Resolves with the session; rejects (err.code = the close code) if the bridge refuses or
   * the socket closes first. onLost(code) is called once if the socket closes afterwards. */
  async function connect(opts, media, resume, onLost, timeoutMs) {
    const ws = new WebSocket(wsUrl(opts.signalUrl || `/ws/rooms/${encodeURIComponent(opts.meetingId)}/signal`, opts.token));
    const waiting = new Map();  // "welcome" | "joined" | "answer:publish" | "answer:subscribe" -> {resolve, reject}
    let slots = [];
    let ready = false;
    let refusal = "";  // the bridge's error message, if it sent one before closing
    const negotiations = { publish: 0, subscribe: 0 };
    const pcs = [];
    function expect(key) { return new Promise((resolve, reject) => waiting.set(key, { resolve, reject })); }
    function failAll(err) { for (const w of waiting.values()) w.reject(err); waiting.clear(); }
    const opened = new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => { const err = new Error("cannot reach the bridge"); err.code = 1006; reject(err); };
    });
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      const key = m.type === "answer" ? `answer:${m.pc}` : m.type;
      if (m.type === "slots") { slots = m.slots; showSlots(slots); return; }
      if (m.type === "error") { refusal = m.message; return; }  // the close that follows carries the code
      const w = waiting.get(key);
      if (w) { waiting.delete(key); w.resolve(m); }
    };
    ws.onclose = (e) => {
      const err = new Error(refusal || e.reason || `the bridge closed the connection (${e.code})`);
      err.code = e.code;
      failAll(err);
      for (const pc of pcs) pc.close();
      if (ready) onLost(e.code);
    };
    // A stuck attempt (a connection left in a stopping server's backlog) is abandoned: closing
    // the socket rejects whatever it waits for, and the caller tries again.
    const timer = timeoutMs ? setTimeout(() => {
      const err = new Error("the bridge did not answer in time"); err.code = 1006;
      failAll(err); ws.close();
    }, timeoutMs) : null;
    try {
      await opened;
      const welcome = await expect("welcome");
      const joinedAck = expect("joined");
      const join = { type: "join", name: opts.displayName || "Participant", consent: !!opts.consent };
      if (resume) join.resume = resume;
      ws.send(JSON.stringify(join));
      const joined = await joinedAck;

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
      pcs.push(up);
      for (const track of media.getTracks()) {
        const init = { direction: "sendonly", streams: [media] };
        if (track.kind === "video") init.sendEncodings = [{ maxBitrate: MAX_VIDEO_BITRATE }];
        const { sender } = up.addTransceiver(track, init);
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

      // a new subscribe connection brings new receive slots: the old ones' tracks are gone
      for (const old of document.querySelectorAll("#remote-media figure.remote-slot")) old.remove();
      const down = new RTCPeerConnection({ iceServers: [] });
      pcs.push(down);
      for (let i = 0; i < RECEIVE_SLOTS; i++) {  // room for the others' camera and microphone
        down.addTransceiver("video", { direction: "recvonly" });
        down.addTransceiver("audio", { direction: "recvonly" });
      }
      down.ontrack = (e) => { slotElement(e.transceiver.mid, e.track); showSlots(slots); };
      await offer("subscribe", down);
      ready = true;
      return {
        ws, up, down, media, negotiations, participantId: joined.participant_id, bot: welcome.bot,
        resume: joined.resume, resumed: !!joined.resumed, get slots() { return slots; },
      };
    } catch (err) {
      ws.close();
      for (const pc of pcs) pc.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  window.MicroCueJoin = {
    async start(opts) {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
      const hook = window.MicroCueJoin;
      let reconnects = 0;

      function inMeeting(session) {
        session.reconnects = reconnects;
        hook.session = session;
        setStatus(`${session.bot} You are in the meeting${opts.consent ? "" : " (not analysed)"}.`);
      }

      /* Keep trying to get back in, as the same participant, until RECONNECT_FOR_MS passes. */
      async function reconnect(resume) {
        const deadline = Date.now() + RECONNECT_FOR_MS;
        for (let attempt = 0; ; attempt++) {
          setStatus("The meeting service restarted; reconnecting…");
          await sleep(RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)]);
          try {
            const session = await connect(opts, media, resume, lost, ATTEMPT_TIMEOUT_MS);
            reconnects += 1;  // times the page got back in, not attempts: a slow restart takes several
            inMeeting(session);
            return;
          } catch (err) {
            if (FINAL_CLOSE_CODES.has(err.code) || Date.now() > deadline) {
              setStatus(`Disconnected from the meeting: ${err.message}`);
              return;
            }
          }
        }
      }

      function lost(code) {
        const session = hook.session;
        if (code === CLOSE_RESTART && session) { reconnect(session.resume); return; }
        setStatus("Disconnected from the meeting.");
      }

      // A 1012 while joining (a bridge worker handing the room over) means "try again".
      for (let attempt = 0; ; attempt++) {
        try {
          inMeeting(await connect(opts, media, null, lost));
          return hook.session.participantId;
        } catch (err) {
          if (err.code !== CLOSE_RESTART || attempt + 1 >= RECONNECT_DELAYS_MS.length) throw err;
          await sleep(RECONNECT_DELAYS_MS[attempt]);
        }
      }
    },
  };
})();

/* WebRTC for the join page: publishes camera and microphone to the MicroCue bridge of a
 * built-in room and shows the other participants it relays. Protocol: web/ws/signal.py. */
(function () {
  "use strict";
  if (window.MicroCueJoin) return; // a page (or a test) that brings its own hook keeps it
  const RECEIVE_SLOTS = 7;  // the rest of a full room (bridge/rooms/builtin.py MAX_PARTICIPANTS)

  function wsUrl(path, token) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${path}?token=${encodeURIComponent(token)}`;
  }

  function nextMessage(ws) {
    return new Promise((resolve, reject) => {
      ws.onmessage = (e) => resolve(JSON.parse(e.data));
      ws.onclose = (e) => reject(new Error(e.reason || `the bridge closed the connection (${e.code})`));
    });
  }

  async function expect(ws, type) {
    const msg = await nextMessage(ws);
    if (msg.type === "error") throw new Error(msg.message);
    if (msg.type !== type) throw new Error(`expected ${type} from the bridge, got ${msg.type}`);
    return msg;
  }

  function showRemote(track) {
    let area = document.getElementById("remote-media");
    if (!area) {
      area = document.createElement("section");
      area.id = "remote-media";
      area.className = "remote-media";
      document.querySelector("main").appendChild(area);
    }
    const el = document.createElement(track.kind === "video" ? "video" : "audio");
    el.autoplay = true; el.playsInline = true;
    el.srcObject = new MediaStream([track]);
    if (track.kind === "video") { el.width = 320; el.muted = true; } else { el.hidden = true; }
    area.appendChild(el);
  }

  window.MicroCueJoin = {
    async start({ meetingId, token, displayName, consent, signalUrl }) {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
      const ws = new WebSocket(wsUrl(signalUrl || `/ws/rooms/${encodeURIComponent(meetingId)}/signal`, token));
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("cannot reach the bridge")); });
      const welcome = await expect(ws, "welcome");
      ws.send(JSON.stringify({ type: "join", name: displayName || "Participant", consent: !!consent }));
      await expect(ws, "joined");
      let pc = null;
      // Each offer gets a fresh peer on both sides; the bridge relays everyone present then.
      async function negotiate() {
        if (pc) pc.close();
        pc = new RTCPeerConnection({ iceServers: [] });
        media.getTracks().forEach((t) => pc.addTrack(t, media));
        for (let i = 0; i < RECEIVE_SLOTS; i++) {  // room for the others' camera and microphone
          pc.addTransceiver("video", { direction: "recvonly" });
          pc.addTransceiver("audio", { direction: "recvonly" });
        }
        pc.ontrack = (e) => showRemote(e.track);
        await pc.setLocalDescription(await pc.createOffer());
        // aiortc takes a complete offer: wait for ICE gathering (host candidates only, quick)
        await new Promise((resolve) => {
          if (pc.iceGatheringState === "complete") return resolve();
          pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") resolve(); };
          setTimeout(resolve, 3000);
        });
        ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
        const answer = await expect(ws, "answer");
        await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          if (m.type === "renegotiate") {
            const area = document.getElementById("remote-media");
            if (area) area.innerHTML = "";
            negotiate().catch((err) => console.warn("renegotiation failed", err));
          } else if (m.type === "error") console.warn(m.message);
        };
        ws.onclose = () => { const s = document.getElementById("status"); if (s) { s.textContent = "Disconnected from the meeting."; s.hidden = false; } };
        window.MicroCueJoin.session = { ws, pc, media, participantId: welcome.participant_id };
      }
      await negotiate();
      const status = document.getElementById("status");
      status.textContent = `${welcome.bot} You are in the meeting${consent ? "" : " (not analysed)"}.`;
      status.hidden = false;
      return welcome.participant_id;
    },
  };
})();

/* Participant join page: disclosure and consent (AI Act Art. 50(3)) before anything is sent.
 * The WebRTC part plugs in as window.MicroCueJoin (see the hook comment in join.html). */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const meetingId = decodeURIComponent(location.pathname.split("/")[2] || "");
  const token = new URLSearchParams(location.search).get("token") || "";
  let info = null;

  function status(text) { const el = $("status"); el.textContent = text; el.hidden = !text; }

  function fill(listId, items) {
    const ul = $(listId);
    ul.innerHTML = "";
    for (const item of items) { const li = document.createElement("li"); li.textContent = item; ul.appendChild(li); }
  }

  async function load() {
    const r = await fetch(`/api/join/${encodeURIComponent(meetingId)}?token=${encodeURIComponent(token)}`, { cache: "no-store" });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      $("subtitle").textContent = body.detail || "This join link does not work.";
      return;
    }
    info = await r.json();
    $("title").textContent = info.title;
    $("subtitle").textContent = `You are invited to join as a participant (${info.context} meeting).`;
    fill("inferred", info.inferred);
    fill("not-inferred", info.not_inferred);
    $("not-inferred-block").hidden = !info.not_inferred.length;
    $("notice").textContent = info.notice || "";
    $("disclosure").hidden = false;
  }

  async function join(consent) {
    const hook = window.MicroCueJoin;
    if (!hook || typeof hook.start !== "function") {
      status("Joining from the browser is not available in this build yet. Your choice was not sent anywhere.");
      return;
    }
    status(consent ? "Joining with analysis…" : "Joining without analysis…");
    try {
      await hook.start({
        meetingId, token, consent, info,
        displayName: $("display-name").value.trim(),
        signalUrl: info ? info.signal_url : `/ws/rooms/${encodeURIComponent(meetingId)}/signal`,
      });
    } catch (e) {
      status(`Could not join: ${e && e.message ? e.message : e}`);
    }
  }

  $("join-consent").addEventListener("click", () => join(true));
  $("join-decline").addEventListener("click", () => join(false));
  load().catch((e) => { $("subtitle").textContent = `Could not load the meeting: ${e}`; });
})();

"""A meeting page with a chat box, served by the browser-bot tests, and the recipe that joins it:
type a name, press Join, wait for one's own camera; post in the chat; "ended" when the page says so."""

from __future__ import annotations

from bridge.rooms.browser import Recipe, Step

PAGE = """<!doctype html><meta charset="utf-8"><title>chat meeting</title>
<input id="who"><button id="go">Join</button><div id="call" hidden><video id="me" autoplay muted></video>
<input id="say"><button id="send">Send</button><ol id="log"></ol><button id="hangup">Leave</button></div>
<script>
window.mic = null;
document.getElementById("go").onclick = async () => {
  const s = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  window.mic = s.getAudioTracks()[0];
  document.getElementById("me").srcObject = s;
  document.getElementById("call").hidden = false;
  window.joinedAs = document.getElementById("who").value;
};
document.getElementById("send").onclick = () => {
  const li = document.createElement("li");
  li.textContent = document.getElementById("say").value;
  document.getElementById("log").appendChild(li);
};
document.getElementById("hangup").onclick = () => {
  const e = document.createElement("div"); e.className = "call-ended"; document.body.appendChild(e);
};
</script>"""

RECIPE = Recipe(
    name="test-chat",
    description="a page with a chat box",
    steps=(Step("fill", "#who", "{name}"), Step("click", "#go"), Step("wait", "#me")),
    tile="div",
    participant_name="#who",
    ended=".call-ended",
    chat_input="#say",
    chat_send="#send",
)

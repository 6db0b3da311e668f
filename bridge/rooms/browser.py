"""The browser bot: joins any web meeting page as a guest in Debian's chromium (Playwright).

Meeting-bot services reach Meet, Teams or in-house apps the same way: a real browser opens the
meeting page. Here the bot

* follows a **recipe** (``bridge/rooms/recipes/NAME.toml``: steps to enter its name and join,
  where display names live, optionally a chat box and what "the call ended" looks like);
* shows a still **card** as its camera ("MicroCue: analysing faces, ask the host to opt out")
  and keeps its microphone muted;
* forwards every remote participant's video (and the audio that came with it) to this service
  over WebRTC as a WHIP publish (``web/routes/whip.py``), under the display name the page shows:
  an init script (``browser_forward.js``) wraps ``RTCPeerConnection`` so the browser re-sends
  the received tracks; no frame passes through JavaScript. Each forwarded participant is then a
  participant of the meeting's built-in room, with its own workers and cues, and leaves when the
  page hangs up on them (presence 0);
* leaves when told (meeting end, ``DELETE .../bot``), or when the page ends the call.

Playwright runs on the bot's own thread, on asyncio's own loop, never on the service's: the
service runs on uvloop (``bridge/eventloop.py``), and uvloop runs the interpreter's after-fork
code in the child it forks for a subprocess (uvloop issue 749; asyncio's loop execs the child
without it). That code frees the other threads' thread-local objects in the child; PyAV keeps a
scaler with its own slice threads in each decoding thread's thread-local storage, and freeing it
there waits forever on a condition whose waiters the child does not have. Chromium's driver never
started and the service's loop stayed blocked inside the spawn (``tests/e2e/test_browser_bot.py``
once the test server moved to uvloop; gdb showed the forked child in ``sws_freeContext``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bridge.errors import MicroCueError, UsageError

log = logging.getLogger("microcue.rooms.browser")
T = TypeVar("T")

RECIPES_DIR = Path(__file__).with_name("recipes")
FORWARD_JS = Path(__file__).with_name("browser_forward.js")
#: Debian's chromium; Playwright drives it instead of downloading its own browser.
CHROMIUM = "/usr/bin/chromium"
BOT_NAME = "MicroCue notetaker"
CARD_LINES = ("MicroCue: analysing faces,", "ask the host to opt out")
ANNOUNCEMENT = (
    "MicroCue notetaker is in this meeting: it reads facial signals (engagement, attention, "
    "expressions) from the cameras it sees; no video or audio is stored. Ask the host to opt out."
)
#: The card's size and rate: a still picture needs few frames; 640x480 is what meeting pages expect.
CARD_SIZE = (640, 480)
CARD_FPS = 5
#: Seconds one recipe step may take (page load, a button to appear).
STEP_TIMEOUT_S = 30.0
#: Seconds the bot waits for a remote participant's name to appear next to their video.
NAME_WAIT_S = 15.0
#: Poll period for "did the page end the call?".
ENDED_POLL_S = 0.5
#: Seconds the bot gives the page to end its forwards (WHIP DELETEs) when leaving.
LEAVE_TIMEOUT_S = 5.0
#: Longest page URL accepted (like the other bot targets, web/schemas.py MAX_URL_LEN).
MAX_PAGE_URL = 2048
_RECIPE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# Without the background-networking flags chromium keeps calling home; the fake-media flags give
# it the card as camera and grant the page's getUserMedia without a prompt.
_CHROMIUM_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)


class RecipeError(UsageError):
    """A recipe that does not exist or does not say what the bot needs."""


@dataclass(frozen=True, slots=True)
class Step:
    action: Literal["click", "fill", "wait", "press"]
    selector: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    description: str
    steps: tuple[Step, ...]
    #: the nearest element around a remote <video> that holds the participant's name, and the name in it
    tile: str
    participant_name: str
    ended: str | None = None
    chat_input: str | None = None
    #: a button to click after typing, or None to press Enter
    chat_send: str | None = None
    #: characters the page refuses in a display name (a regex character class), dropped from the bot's
    name_refuses: str | None = None

    def display_name(self, name: str) -> str:
        """``name`` as this page accepts it: refused characters dropped, the words run together
        with capitals ("MicroCue notetaker" -> "MicroCueNotetaker" where only letters and digits pass)."""
        if not self.name_refuses:
            return name
        words = [w for w in re.split(f"(?:{self.name_refuses})+", name) if w]
        return "".join(w if i == 0 else w[:1].upper() + w[1:] for i, w in enumerate(words)) or "MicroCue"


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def load_recipe(name: str) -> Recipe:
    """The recipe ``name`` from ``bridge/rooms/recipes``, or a RecipeError saying what is wrong."""
    if not _RECIPE_NAME.match(name):
        raise RecipeError(f"recipe names are lowercase letters, digits and '-', got {name!r}")
    path = RECIPES_DIR / f"{name}.toml"
    if not path.exists():
        raise RecipeError(f"no recipe {name!r}; available: {', '.join(available_recipes()) or 'none'}")
    try:
        data = tomllib.loads(path.read_text())
        steps = tuple(_step(s) for s in data["steps"])
        people = data["participants"]
        chat = data.get("chat", {})
        return Recipe(
            name=name,
            description=str(data.get("description", name)),
            steps=steps,
            tile=str(people["tile"]),
            participant_name=str(people["name"]),
            ended=data.get("ended", {}).get("selector"),
            chat_input=chat.get("input"),
            chat_send=chat.get("send"),
            name_refuses=data.get("name_refuses"),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RecipeError(f"recipe {name!r} ({path}) is malformed: {exc!r}") from exc


def _step(raw: dict[str, Any]) -> Step:
    for action in ("click", "fill", "wait", "press"):
        if action in raw:
            return Step(action=action, selector=str(raw[action]), value=str(raw.get("value", "")))
    raise ValueError(f"a step needs one of click, fill, wait, press: {raw}")


def check_page_url(url: str) -> str:
    """The one check a meeting page URL gets here (scheme, host, no credentials); the operator's
    host allow-list is applied by ``MeetingService.request_bot`` like for every bot target."""
    if len(url) > MAX_PAGE_URL:
        raise UsageError(f"the page URL is {len(url)} characters, more than {MAX_PAGE_URL}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"the page must be an http(s) URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise UsageError("the page URL must not carry a user name or password")
    return url


def render_card(path: Path, lines: tuple[str, ...] = CARD_LINES, seconds: float = 1.0) -> Path:
    """The bot's camera: a still card with its notice, as the Y4M file chromium's fake camera plays."""
    width, height = CARD_SIZE
    image = Image.new("RGB", CARD_SIZE, (24, 46, 62))
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=30)
    except TypeError:  # Pillow < 10.1 has one fixed size
        font = ImageFont.load_default()
    y = height // 2 - 40 * len(lines) // 2
    for line in lines:
        box = draw.textbbox((0, 0), line, font=font)
        draw.text(((width - (box[2] - box[0])) // 2, y), line, fill=(240, 240, 240), font=font)
        y += 40
    yuv = image.convert("YCbCr")
    y_plane, cb, cr = (np.asarray(c) for c in yuv.split())
    half = (width // 2, height // 2)
    u = np.asarray(Image.fromarray(cb).resize(half, Image.Resampling.BILINEAR))
    v = np.asarray(Image.fromarray(cr).resize(half, Image.Resampling.BILINEAR))
    frame = y_plane.tobytes() + u.tobytes() + v.tobytes()
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{CARD_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(max(1, round(seconds * CARD_FPS))):
            f.write(b"FRAME\n" + frame)
    return path


def init_script(*, whip_url: str, join_token: str, recipe: Recipe, name: str) -> str:
    config = {
        "whip": whip_url,
        "token": join_token,
        "tile": recipe.tile,
        "name": recipe.participant_name,
        "nameWaitMs": int(NAME_WAIT_S * 1000),
        "botName": name,
    }
    return f"window.__MICROCUE_BOT__ = {json.dumps(config)};\n{FORWARD_JS.read_text()}"


class BrowserBot:
    """One chromium in one meeting page; ``run()`` until the call ends or ``aclose()``.

    ``run``, ``joined``, ``in_page``, ``forwarded`` and ``aclose`` belong to the caller's loop;
    all that Playwright does happens on the bot's browser thread (the module's docstring says why).
    """

    kind = "page"

    def __init__(
        self,
        page_url: str,
        recipe: Recipe,
        *,
        whip_url: str,
        join_token: str,
        name: str = BOT_NAME,
        executable: str = CHROMIUM,
    ) -> None:
        self.page_url = check_page_url(page_url)
        self.recipe = recipe
        self.whip_url = whip_url
        self.join_token = join_token
        self.name = recipe.display_name(name)
        self.executable = executable
        #: set once the bot is in the meeting (its steps ran); an event of the loop that called run()
        self.joined = asyncio.Event()
        #: set from any thread; the browser thread looks at it every ENDED_POLL_S
        self._leave = threading.Event()
        #: the bot's scratch folder (card, browser profile); its path is on chromium's command line
        self.workdir: Path | None = None
        self._page: Any = None
        self._browser_loop: asyncio.AbstractEventLoop | None = None
        self._session_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """The bot on its browser thread until it leaves. Cancelled, it makes the bot leave and
        still waits for chromium to close: a recalled bot leaves no browser behind."""
        try:
            # Playwright is the optional `browser` extra: only a browser bot needs it
            import playwright.async_api  # noqa: F401, PLC0415
        except ImportError as exc:
            raise MicroCueError("the browser bot needs Playwright: pip install 'microcue[browser]'") from exc
        caller = asyncio.get_running_loop()
        finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(target=self._browser_thread, args=(caller, finished), name="browser-bot", daemon=True)
        thread.start()
        try:
            await asyncio.shield(asyncio.wrap_future(finished))
        except asyncio.CancelledError:
            self._leave.set()
            loop, session = self._browser_loop, self._session_task
            if loop is not None and session is not None and not self.joined.is_set():
                loop.call_soon_threadsafe(session.cancel)  # still joining: stop the steps, close chromium
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wrap_future(finished)
            raise

    def _browser_thread(self, caller: asyncio.AbstractEventLoop, finished: concurrent.futures.Future[None]) -> None:
        try:
            # asyncio's own loop, whatever the process runs elsewhere: its subprocess spawn execs at once
            with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
                runner.run(self._session(caller))
        except BaseException as exc:  # handed to the caller's loop, which raises it from run()
            finished.set_exception(exc)
        else:
            finished.set_result(None)

    async def _session(self, caller: asyncio.AbstractEventLoop) -> None:
        from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415
        from playwright.async_api import async_playwright  # noqa: PLC0415

        self._session_task = asyncio.current_task()
        self._browser_loop = asyncio.get_running_loop()
        self.workdir, card = await asyncio.to_thread(self._prepare)
        args = [*_CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={card}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # chromium refuses to run its sandbox as root
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=self.executable, args=args)
                try:
                    page = self._page = await browser.new_page()
                    page.on("console", lambda msg: log.debug("page: %s", msg.text[:300]))
                    page.on("pageerror", lambda exc: log.warning("page error: %s", exc))
                    await page.add_init_script(
                        script=init_script(
                            whip_url=self.whip_url, join_token=self.join_token, recipe=self.recipe, name=self.name
                        )
                    )
                    try:
                        await page.goto(self.page_url, timeout=STEP_TIMEOUT_S * 1000)
                        for step in self.recipe.steps:
                            await self._do(page, step)
                        await self._announce(page)
                    except PlaywrightError as exc:
                        raise MicroCueError(
                            f"could not join {self.page_url} with recipe {self.recipe.name!r}: {exc.message}"
                        ) from exc
                    caller.call_soon_threadsafe(self.joined.set)
                    log.info("browser bot joined %s as %r (recipe %s)", self.page_url, self.name, self.recipe.name)
                    reason = await self._until_over(page)
                    log.info("browser bot leaves %s: %s", self.page_url, reason)
                finally:
                    await self._stop_forwards()
                    self._page = None
                    await browser.close()
        finally:
            self._browser_loop = self._session_task = None
            if self.workdir is not None:  # None: the scratch folder failed first
                await asyncio.to_thread(shutil.rmtree, self.workdir, ignore_errors=True)

    def _prepare(self) -> tuple[Path, Path]:
        """The scratch folder and the camera card (file work, off the event loop)."""
        if not Path(self.executable).exists():
            raise MicroCueError(f"{self.executable} not found: install Debian's chromium (apt-get install chromium)")
        workdir = Path(tempfile.mkdtemp(prefix="microcue-bot-"))
        return workdir, render_card(workdir / "card.y4m")

    async def _do(self, page: Any, step: Step) -> None:
        timeout = STEP_TIMEOUT_S * 1000
        match step.action:
            case "click":
                await page.click(step.selector, timeout=timeout)
            case "fill":
                await page.fill(step.selector, step.value.replace("{name}", self.name), timeout=timeout)
            case "press":
                await page.press(step.selector, step.value or "Enter", timeout=timeout)
            case "wait":
                await page.wait_for_selector(step.selector, timeout=timeout)

    async def _announce(self, page: Any) -> None:
        """Posts the announcement in the page's chat, when the recipe names one."""
        if not self.recipe.chat_input:
            return
        await page.fill(self.recipe.chat_input, ANNOUNCEMENT, timeout=STEP_TIMEOUT_S * 1000)
        if self.recipe.chat_send:
            await page.click(self.recipe.chat_send, timeout=STEP_TIMEOUT_S * 1000)
        else:
            await page.press(self.recipe.chat_input, "Enter")

    async def _until_over(self, page: Any) -> str:
        while not self._leave.is_set():
            if page.is_closed():
                return "the page closed"
            if self.recipe.ended and await page.locator(self.recipe.ended).count() > 0:
                return "the page ended the call"
            await asyncio.sleep(ENDED_POLL_S)
        return "asked to leave"

    async def _stop_forwards(self) -> None:
        """Ends every forward (WHIP DELETE) so the participants leave at once, not at ICE timeout."""
        page = self._page
        if page is None or page.is_closed():
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LEAVE_TIMEOUT_S):
                await page.evaluate("window.__microcue && window.__microcue.stopAll()")

    async def in_page(self, action: Callable[[Any], Awaitable[T]]) -> T:
        """``action(page)`` run on the browser thread while the bot is in the meeting page (logs
        and tests: Playwright's objects belong to that thread's loop, not the caller's)."""
        loop, page = self._browser_loop, self._page
        if loop is None or page is None:
            raise MicroCueError("the browser bot is not in a meeting page")

        async def call() -> T:
            return await action(page)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), loop))

    async def forwarded(self) -> dict[str, list[str]]:
        """Names forwarded and left so far, as the page's script recorded them (for logs and tests)."""
        if self._page is None:
            return {}
        state: dict[str, list[str]] = await self.in_page(
            lambda page: page.evaluate(
                "window.__microcue ? {forwarded: window.__microcue.forwarded, left: window.__microcue.left,"
                " errors: window.__microcue.errors} : {}"
            )
        )
        return state

    def live(self) -> dict[str, dict[str, Any]]:
        """Nothing of its own: what it forwards arrives as WHIP participants of the built-in room."""
        return {}

    async def aclose(self) -> None:
        self._leave.set()

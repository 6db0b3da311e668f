"""``microcue demo``: the service plus a synthetic participant who joins over real WebRTC, until Ctrl-C.

The participant is a real face (the astronaut photograph shipped in ``bridge/demo/data``) with
scripted facial actions (a unilateral lip-corner pull, a smile, a brow raise with jaw drop),
rendered once and looped; it joins the built-in room exactly as a browser does (signalling
websocket, SDP offer, DTLS/SRTP). The dashboard URL is printed on a line of its own; every cue is
printed as it arrives.

WebRTC needs a non-loopback address (ICE ignores 127.0.0.1). Where a private network namespace
can be made (root, or user namespaces), the demo runs its service and participant inside one,
so no media touches the machine's real interfaces, and serves the app there on a Unix socket
too; this process forwards ``--host:--port`` to that socket (:mod:`bridge.demo.forward`), so the
printed URL opens in the user's own browser all the same. Elsewhere it is a plain local server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

from bridge import eventloop
from bridge.config import Settings
from bridge.demo.netns import NetnsError, netns_address, netns_command, netns_usable
from bridge.errors import MicroCueError
from bridge.executor import run_in_background
from web.commands.harness import bind_tcp, bind_unix, cannot_listen, printing_cues, serving, stop_on_signals

#: Length of the scripted loop: three actions a few seconds apart, then it repeats.
LOOP_S = 12.0
FPS = 15.0
#: Seconds the outer process waits for the service inside the namespace to open its socket.
INNER_START_S = 120.0
#: Seconds Ctrl-C gives the inner demo to end the meeting and write its summary.
INNER_STOP_S = 20.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="serve + a synthetic participant joining over WebRTC, until Ctrl-C")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument(
        "--context",
        default="customer",
        choices=["customer", "public", "research", "clinical", "workplace", "education"],
    )
    p.add_argument(
        "--netns",
        choices=["auto", "on", "off"],
        default="auto",
        help="run WebRTC inside a private network namespace (auto: when one can be made)",
    )
    # Internal: the Unix socket the service inside the namespace also listens on.
    p.add_argument("--unix-socket", type=Path, default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=run)


def scripted_frames(settings: Settings) -> list[np.ndarray]:
    """One loop of the astronaut with three injected actions, as yuv420p frames, rendered once."""
    from bridge.demo.actions import EMOTION_AUS, Action, contempt_aus
    from bridge.demo.puppet import face_landmarks, scripted_frames
    from bridge.demo.scene import Pose, astronaut, render
    from bridge.demo.synthetic import to_yuv
    from bridge.models.face import load_face_models

    face = astronaut()
    landmarks = face_landmarks(load_face_models(settings.model_dir, prefer_gpu=False), face)
    actions = [
        Action("micro", "contempt", contempt_aus("R"), 3.0, 3.15, 3.3, 0.07),
        Action("micro", "happiness", EMOTION_AUS["happiness"], 6.5, 6.7, 6.9, 0.08),
        Action("micro", "surprise", EMOTION_AUS["surprise"], 10.0, 10.15, 10.35, 0.08),
    ]
    frames = scripted_frames(face, landmarks, actions, LOOP_S, FPS)
    centre = (float(landmarks[:, 0].mean()), float(landmarks[:, 1].mean()))
    return to_yuv([render(Pose(), source, centre=centre) for source in frames])


async def _serve_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The demo itself: service, meeting, synthetic participant, cues on stdout."""
    from bridge.demo.client import join_room
    from bridge.demo.synthetic import SyntheticFaceTrack
    from web.app import create_app

    frames = await run_in_background(scripted_frames, settings)
    app = create_app(settings)
    sockets = [bind_tcp(settings)]
    if args.unix_socket is not None:
        sockets.append(bind_unix(args.unix_socket))
    async with serving(app, settings, sockets, log_level="warning"):
        service = app.state.web.service
        created = await service.create_meeting(title="MicroCue demo", context=args.context)
        meeting_id = created.meeting.id
        print(f"meeting {meeting_id} ({args.context}); open the presenter dashboard:", file=sys.stderr)
        print(created.dashboard_url, flush=True)
        async with printing_cues(service.bus.subscribe(meeting_id)):
            ws_base = f"ws://{settings.host}:{settings.port}"
            client = await join_room(
                ws_base,
                meeting_id,
                created.join_token,
                name="Demo participant",
                consent=True,
                tracks=[SyntheticFaceTrack(frames, fps=FPS)],
            )
            print(
                f"synthetic participant {client.participant_id} joined over WebRTC ({client.bot}); "
                "Ctrl-C ends the meeting",
                file=sys.stderr,
            )
            async with stop_on_signals() as stop:
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(args.duration):
                            await stop.wait()
                finally:
                    await client.aclose()
                    await asyncio.sleep(0.5)  # the participant's last cues (presence 0) reach the bus and the store
                    await service.end_meeting(meeting_id)
                    # stderr is where the log goes (and a journal keeps it): no token here; the dashboard
                    # link on stdout carries it, and `microcue report` needs none
                    print(
                        f"meeting ended; report: microcue report {meeting_id} --format html (or "
                        f"{settings.base_url}/api/meetings/{meeting_id}/report.html with the dashboard's token)",
                        file=sys.stderr,
                    )
    return 0


def _settings_env(settings: Settings) -> dict[str, str]:
    """The settings as MICROCUE_* variables, so the demo inside the namespace runs with the same ones."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value not in ("", None):
            env[f"MICROCUE_{name.upper()}"] = str(value)
    return env


async def _demo_in_namespace(args: argparse.Namespace, settings: Settings) -> int:
    """Run the demo inside a fresh namespace; forward host:port here to its Unix socket."""
    from bridge.demo.forward import UnixForwarder

    with tempfile.TemporaryDirectory(prefix="microcue-demo-") as tmp:
        sock_path = Path(tmp) / "service.sock"
        inner = [
            sys.executable,
            "-m",
            "web.cli",
            "demo",
            "--netns",
            "off",
            "--context",
            args.context,
            "--unix-socket",
            str(sock_path),
        ]
        if args.duration is not None:
            inner += ["--duration", str(args.duration)]
        try:
            forwarder = await UnixForwarder(settings.host, settings.port, sock_path).__aenter__()
        except OSError as exc:
            raise cannot_listen(settings, exc) from exc
        try:
            proc = await asyncio.create_subprocess_exec(*netns_command(inner), env=_settings_env(settings))
            async with stop_on_signals() as stop:
                waiting = asyncio.create_task(proc.wait(), name="demo-inner")
                stopping = asyncio.create_task(stop.wait(), name="demo-stop")
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not waiting.done():
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGINT)
                    try:
                        await asyncio.wait_for(asyncio.shield(waiting), INNER_STOP_S)
                    except TimeoutError:
                        proc.kill()
                return await waiting
        finally:
            await forwarder.__aexit__(None, None, None)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.duration is not None and args.duration <= 0:
        raise MicroCueError(f"--duration must be positive, got {args.duration}")
    inside = netns_address() is not None or args.unix_socket is not None
    if args.netns != "off" and not inside:
        problem = netns_usable()
        if problem is None:
            # asyncio's own loop: this process carries no media, only the port forward, and it
            # spawns the inner demo, which uvloop's spawn makes unsafe (bridge/eventloop.py)
            return asyncio.run(_demo_in_namespace(args, settings))
        if args.netns == "on":
            raise NetnsError(problem)
        print(
            f"microcue demo: no private network namespace ({problem}); WebRTC uses this machine's own addresses",
            file=sys.stderr,
        )
    return eventloop.run(_serve_demo(args, settings))

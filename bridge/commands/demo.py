"""``microcue demo``: the service plus a synthetic participant who joins over real WebRTC.

The participant is a real face (skimage's astronaut) with scripted facial actions (a
unilateral lip-corner pull, a smile, a brow raise with jaw drop) rendered once and looped; it
joins the built-in room exactly as a browser does (signalling websocket, SDP offer, DTLS/SRTP).
The dashboard URL is printed on a line of its own; every cue is printed as it arrives.

WebRTC needs a non-loopback address (ICE ignores 127.0.0.1): on a laptop that is its own
network address; `make demo` runs it inside a private network namespace instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import uvicorn

from bridge import logsafe
from bridge.config import Settings
from bridge.errors import MicroCueError

LOOP_S = 12.0
FPS = 15.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="serve + a synthetic participant joining over WebRTC; prints cues")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--context", default="customer",
                   choices=["customer", "public", "research", "clinical", "workplace", "education"])
    p.set_defaults(run=run)


def scripted_frames(settings: Settings) -> list[np.ndarray]:
    """12 s of the astronaut with three injected actions, as yuv420p frames, rendered once."""
    try:
        from bench.spotting.actions import EMOTION_AUS, Action, contempt_aus
        from bench.spotting.generate import TIERS, Scenario, render
        from bench.spotting.run import landmarks_of
        from bench.synth.scene import astronaut
    except ImportError as exc:  # installed without the dev extra or outside the repository
        raise MicroCueError(f"the demo participant needs the repository's bench/ and scikit-image ({exc}); "
                            "run `python -m bridge.cli demo` from the repository (as `make demo` does)") from exc
    from bridge.facemodels import load_face_models
    from bridge.synthetic import to_yuv

    models = load_face_models(settings.model_dir, prefer_gpu=False)
    actions = [
        Action("micro", "contempt", contempt_aus("R"), 3.0, 3.15, 3.3, 0.07),
        Action("micro", "happiness", EMOTION_AUS["happiness"], 6.5, 6.7, 6.9, 0.08),
        Action("micro", "surprise", EMOTION_AUS["surprise"], 10.0, 10.15, 10.35, 0.08),
    ]
    scenario = Scenario(TIERS["easy"], seconds=LOOP_S, fps=FPS, seed=5, actions=actions)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "demo.mp4"
        render(scenario, video, landmarks_of(models, astronaut()))
        with av.open(str(video)) as c:
            rgb = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return to_yuv(rgb)


def _cue_line(cue: dict[str, object]) -> str:
    return json.dumps(cue, separators=(",", ":"))


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.rooms.client import join_room
    from bridge.synthetic import SyntheticFaceTrack
    from web.app import create_app

    frames = await asyncio.to_thread(scripted_frames, settings)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                           ws_max_size=1024 * 1024))
    logsafe.install()  # after uvicorn set up its handlers: no token in any log line
    serving = asyncio.create_task(server.serve(), name="demo-server")
    while not server.started:
        if serving.done():
            serving.result()  # re-raises why it could not start (port taken, ...)
            raise MicroCueError(f"the service did not start on {settings.host}:{settings.port}")
        await asyncio.sleep(0.05)
    service = app.state.service
    created = await service.create_meeting(title="MicroCue demo", context=args.context)
    meeting_id = created.meeting.id
    print(f"meeting {meeting_id} ({args.context}); open the presenter dashboard:", file=sys.stderr)
    print(created.dashboard_url, flush=True)
    subscription = service.bus.subscribe(meeting_id)

    async def print_cues() -> None:
        async for cue in subscription:
            print(_cue_line(cue.to_dict()), flush=True)

    printer = asyncio.create_task(print_cues(), name="demo-cues")
    ws_base = f"ws://{settings.host}:{settings.port}"
    client = await join_room(ws_base, meeting_id, created.join_token,
                             name="Demo participant", consent=True, tracks=[SyntheticFaceTrack(frames, fps=FPS)])
    print(f"synthetic participant {client.participant_id} joined over WebRTC ({client.bot})", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                await stop.wait()
    finally:
        await client.aclose()
        await asyncio.sleep(0.5)  # the participant's last cues (presence 0) reach the bus and the store
        await service.end_meeting(meeting_id)
        # stderr is where the log goes (and a journal keeps it): no token here; the dashboard link
        # on stdout carries it, and `microcue report` needs none
        print(f"meeting ended; report: microcue report {meeting_id} --format html (or "
              f"{settings.base_url}/api/meetings/{meeting_id}/report.html with the dashboard's token)",
              file=sys.stderr)
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
        await subscription.aclose()
        server.should_exit = True
        await serving
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.duration is not None and args.duration <= 0:
        raise MicroCueError(f"--duration must be positive, got {args.duration}")
    return asyncio.run(_demo(args, settings))

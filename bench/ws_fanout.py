"""Websocket fan-out benchmark: the real app on uvicorn (loopback), real presenter websockets.

Scenario 1 (fan-out): N presenter connections on one meeting, R cues/s for D seconds,
published on the app's in-process bus from inside the server process (as an embedded
bridge worker does). Each cue carries its publish wall-clock time in ``t``; clients
(spread over several processes so the client side is not the bottleneck) record
``receive time - t``. Reports p50/p99/max delivery latency, cues delivered vs.
expected, and the server's RSS.

Scenario 2 (slow readers): one normal client plus K clients that complete the
handshake and then never read, while 4 kB cues flow. Shows the server's RSS stays
bounded (each connection's queue is bounded, stuck ones are closed) instead of
growing with the data pushed at them.

    .venv/bin/python -m bench.ws_fanout                 # defaults: 50 conns, 200 cues/s, 10 s
    .venv/bin/python -m bench.ws_fanout --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from websockets.asyncio.client import connect

from bridge.bus.mqtt import MqttBus
from bridge.config import Settings
from inference.cues import Cue
from web.app import create_app
from web.commands.harness import WS_MAX_SIZE
from web.state import LiveOptions

#: Connections per client process: 10 x 200 msg/s = 2000 msg/s, comfortably within one Python process.
CONNS_PER_PROCESS = 10
#: Extra seconds clients wait for the last cues after the publisher finished.
DRAIN_GRACE_S = 5.0
#: RSS sampling period.
RSS_SAMPLE_S = 0.1
#: Padding per cue in the slow-reader scenario, so socket buffers fill quickly.
SLOW_PADDING = 4000


# --- server process ----------------------------------------------------------------------------


async def _serve(port: int, data_dir: str, stuck_timeout_s: float, mqtt_url: str) -> None:

    settings = Settings(data_dir=Path(data_dir), port=port, log_level="WARNING", mqtt_url=mqtt_url)
    app = create_app(settings, live_options=LiveOptions(stuck_timeout_s=stuck_timeout_s))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=WS_MAX_SIZE)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.02)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        _, meeting_id, rate, duration, padding = line
        bus = app.state.web.service.bus
        n = int(float(rate) * float(duration))
        detail = "x" * int(padding)
        start = time.monotonic()
        for i in range(n):
            delay = start + i / float(rate) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await bus.publish(
                Cue(
                    type="engagement",
                    t=time.time(),
                    value=0.5,
                    detail=detail,
                    meeting_id=meeting_id,
                    participant_id=f"p{i % 10}",
                    seq=i,
                )
            )
        sys.stdout.write(f"done {n} {time.monotonic() - start:.3f}\n")
        sys.stdout.flush()
    server.should_exit = True
    await serving


async def _publish_mqtt(url: str, meeting_id: str, rate: float, duration: float) -> None:
    """A bridge worker in its own process: paced cues through its own MqttBus to the broker."""

    bus = MqttBus(url)
    await bus.start()
    n = int(rate * duration)
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await bus.publish(
            Cue(type="engagement", t=time.time(), value=0.5, meeting_id=meeting_id, participant_id=f"p{i % 10}", seq=i)
        )
    async with asyncio.timeout(60):
        await bus.flush()
    await bus.aclose()
    sys.stdout.write(f"done {n} {time.monotonic() - start:.3f}\n")


class ServerProcess:
    def __init__(self, stuck_timeout_s: float, mqtt_url: str = "") -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data_dir = tempfile.mkdtemp(prefix="microcue-bench-")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ws_fanout",
                "--serve",
                str(self.port),
                self.data_dir,
                str(stuck_timeout_s),
                mqtt_url or "-",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"benchmark server did not start (got {line!r})")
        self.base_url = f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def publish(self, meeting_id: str, rate: float, duration: float, padding: int = 0) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"publish {meeting_id} {rate} {duration} {padding}\n")
        self.proc.stdin.flush()

    def wait_done(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RssSampler:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.server.rss_mb())
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- client processes --------------------------------------------------------------------------


def _client_process(spec: dict[str, Any], barrier: Any, out: Any) -> None:
    """One client process: ``spec`` has url, conns, expected (cues per connection) and deadline_s."""
    out.put(asyncio.run(_clients(spec["url"], spec["conns"], spec["expected"], barrier, spec["deadline_s"])))


async def _clients(url: str, conns: int, expected: int, barrier: Any, deadline_s: float) -> dict[str, Any]:

    sockets = [await connect(url, max_size=None) for _ in range(conns)]
    for ws in sockets:
        assert json.loads(await ws.recv())["type"] == "snapshot"
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    latencies: list[float] = []
    skipped = 0

    async def read(ws: Any) -> None:
        nonlocal skipped
        got = 0
        while got < expected:
            message = json.loads(await ws.recv())
            if message["type"] == "cue":
                latencies.append(time.time() - message["cue"]["t"])
                got += 1
            elif message["type"] == "skipped":
                skipped += message["count"]
                got += message["count"]

    try:
        async with asyncio.timeout(deadline_s):
            await asyncio.gather(*(read(ws) for ws in sockets))
    except TimeoutError:
        pass
    for ws in sockets:
        await ws.close()
    return {"latencies": latencies, "skipped": skipped}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _create_meeting(base_url: str) -> dict[str, Any]:
    r = httpx.post(f"{base_url}/api/meetings", json={"title": "bench", "context": "customer"}, timeout=30)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def fanout(connections: int, rate: float, duration: float, mqtt_url: str = "") -> dict[str, Any]:
    server = ServerProcess(stuck_timeout_s=10.0, mqtt_url=mqtt_url)
    try:
        meeting = _create_meeting(server.base_url)
        url = f"ws://127.0.0.1:{server.port}/ws/meetings/{meeting['id']}/live?token={meeting['presenter_token']}"
        expected = int(rate * duration)
        groups = [CONNS_PER_PROCESS] * (connections // CONNS_PER_PROCESS)
        if connections % CONNS_PER_PROCESS:
            groups.append(connections % CONNS_PER_PROCESS)
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(len(groups) + 1)
        out = ctx.Queue()
        procs = [
            ctx.Process(
                target=_client_process,
                args=({"url": url, "conns": n, "expected": expected, "deadline_s": duration + 60}, barrier, out),
            )
            for n in groups
        ]
        for p in procs:
            p.start()
        barrier.wait(timeout=60)
        rss_idle = server.rss_mb()
        cpu_before = server.cpu_s()
        with RssSampler(server) as rss:
            started = time.monotonic()
            if mqtt_url:  # the real topology: a worker process publishes, the web process only fans out
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.ws_fanout",
                        "--publish",
                        mqtt_url,
                        meeting["id"],
                        str(rate),
                        str(duration),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
            else:
                server.publish(meeting["id"], rate, duration)
                done = server.wait_done()
            cpu_publishing = server.cpu_s() - cpu_before
            results = [out.get(timeout=duration + 90) for _ in procs]
            elapsed = time.monotonic() - started
        for p in procs:
            p.join(10)
        latencies = [x for r in results for x in r["latencies"]]
        return {
            "bus": "mqtt" if mqtt_url else "in-process",
            "connections": connections,
            "rate_cues_per_s": rate,
            "duration_s": duration,
            "publisher": done,
            "expected_deliveries": expected * connections,
            "delivered": len(latencies),
            "skipped": sum(r["skipped"] for r in results),
            "latency_ms_p50": 1000 * _percentile(latencies, 50),
            "latency_ms_p99": 1000 * _percentile(latencies, 99),
            "latency_ms_max": 1000 * max(latencies, default=float("nan")),
            "latency_ms_mean": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
            "rss_mb_idle": rss_idle,
            "rss_mb_peak": max(rss.samples, default=float("nan")),
            "server_cpu_percent": 100 * cpu_publishing / duration,
            "cpu_count": os.cpu_count(),
            "wall_s": elapsed,
        }
    finally:
        server.stop()


def _raw_stuck_socket(port: int, path: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    return sock


def _metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
    return next((float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " ")), 0.0)


def slow_readers(stuck: int, rate: float, duration: float, stuck_timeout_s: float) -> dict[str, Any]:
    server = ServerProcess(stuck_timeout_s=stuck_timeout_s)
    sockets: list[socket.socket] = []
    try:
        meeting = _create_meeting(server.base_url)
        path = f"/ws/meetings/{meeting['id']}/live?token={meeting['presenter_token']}"
        sockets = [_raw_stuck_socket(server.port, path) for _ in range(stuck)]
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(2)
        out = ctx.Queue()
        expected = int(rate * duration)
        healthy = ctx.Process(
            target=_client_process,
            args=(
                {
                    "url": f"ws://127.0.0.1:{server.port}{path}",
                    "conns": 1,
                    "expected": expected,
                    "deadline_s": duration + 60,
                },
                barrier,
                out,
            ),
        )
        healthy.start()
        barrier.wait(timeout=60)
        rss_idle = server.rss_mb()
        with RssSampler(server) as rss:
            server.publish(meeting["id"], rate, duration, SLOW_PADDING)
            server.wait_done()
            result = out.get(timeout=duration + 90)
            # The stuck clients' last send started blocking near the end of publishing: give it
            # the stuck timeout to expire (polling, so a fast close ends the wait early).
            deadline = time.monotonic() + stuck_timeout_s + 5
            while _metric(server, "microcue_websocket_clients") > 1 and time.monotonic() < deadline:
                time.sleep(0.5)
        healthy.join(10)
        metrics_text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
        closed = next(
            (
                float(line.split()[1])
                for line in metrics_text.splitlines()
                if line.startswith("microcue_websocket_closed_slow_total")
            ),
            0.0,
        )
        skipped_total = next(
            (
                float(line.split()[1])
                for line in metrics_text.splitlines()
                if line.startswith("microcue_websocket_skipped_cues_total")
            ),
            0.0,
        )
        pushed_mb = expected * (SLOW_PADDING + 150) * stuck / 1e6
        return {
            "stuck_clients": stuck,
            "rate_cues_per_s": rate,
            "duration_s": duration,
            "cue_bytes": SLOW_PADDING + 150,
            "data_aimed_at_stuck_clients_mb": pushed_mb,
            "stuck_closed": int(closed),
            "skipped_cues_server_total": int(skipped_total),
            "healthy_client_delivered": len(result["latencies"]),
            "healthy_client_expected": expected,
            "healthy_latency_ms_p99": 1000 * _percentile(result["latencies"], 99),
            "rss_mb_idle": rss_idle,
            "rss_mb_peak": max(rss.samples, default=float("nan")),
        }
    finally:
        for s in sockets:
            s.close()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--publish":
        asyncio.run(_publish_mqtt(argv[1], argv[2], float(argv[3]), float(argv[4])))
        return 0
    if argv and argv[0] == "--serve":
        asyncio.run(_serve(int(argv[1]), argv[2], float(argv[3]), "" if argv[4] == "-" else argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="cues per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    parser.add_argument("--stuck", type=int, default=10, help="clients that never read (slow-reader scenario)")
    parser.add_argument("--stuck-timeout", type=float, default=10.0, help="server's stuck timeout, seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--mqtt",
        default="",
        metavar="URL",
        help="run the fan-out scenario over this MQTT broker (e.g. mqtt://127.0.0.1:1883) instead of the "
        "in-process bus: a separate worker process publishes, the app receives from the broker; "
        "skips the slow-reader scenario",
    )
    args = parser.parse_args(argv)

    bus = f"MQTT bus via {args.mqtt}" if args.mqtt else "in-process bus"
    print(f"fan-out: {args.connections} presenter websockets, {args.rate:g} cues/s for {args.duration:g} s, {bus} ...")
    f = fanout(args.connections, args.rate, args.duration, args.mqtt)
    print(f"  delivered {f['delivered']}/{f['expected_deliveries']} (skipped {f['skipped']})")
    print(
        f"  latency p50 {f['latency_ms_p50']:.1f} ms, p99 {f['latency_ms_p99']:.1f} ms, "
        f"max {f['latency_ms_max']:.1f} ms"
    )
    print(
        f"  server RSS idle {f['rss_mb_idle']:.0f} MB, peak {f['rss_mb_peak']:.0f} MB; "
        f"server CPU {f['server_cpu_percent']:.0f}% of one core ({f['cpu_count']} cores shared with the clients)"
    )

    if args.mqtt:
        if args.json:
            args.json.write_text(json.dumps({"fanout": f}, indent=2))
        return 0
    print(
        f"slow readers: {args.stuck} clients never read + 1 healthy, {args.rate:g} cues/s of "
        f"{SLOW_PADDING + 150} B for {args.duration:g} s ..."
    )
    s = slow_readers(args.stuck, args.rate, args.duration, args.stuck_timeout)
    print(
        f"  data aimed at the stuck clients {s['data_aimed_at_stuck_clients_mb']:.0f} MB; "
        f"server RSS idle {s['rss_mb_idle']:.0f} MB, peak {s['rss_mb_peak']:.0f} MB"
    )
    print(
        f"  stuck clients closed {s['stuck_closed']}/{args.stuck}, cues skipped {s['skipped_cues_server_total']}; "
        f"healthy client got {s['healthy_client_delivered']}/{s['healthy_client_expected']}, "
        f"p99 {s['healthy_latency_ms_p99']:.1f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps({"fanout": f, "slow_readers": s}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The base's web and worker pods, run as local processes exactly as their manifests say:
the containers' `args`, their environment built the way the kubelet builds it (ConfigMap, Secret,
downward API, `$(VAR)` expansion), the init container first, the probes on their paths, and
SIGTERM after preStop with the pod's grace period as the deadline.

Only what cannot be the same outside a cluster is replaced, and named here: Service names
become loopback addresses of the real Mosquitto and PostgreSQL, the ports become free loopback
ports (the unit tests check the manifests' own ports), the pod IP is 127.0.0.1, and the Secret
holds a fresh test database and a random key.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.config import Settings
from tests.services import MOSQUITTO, require_service
from tests.support.k8s_manifests import Obj, container, find, pod_spec, rendered
from tests.support.postgres import database_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
]  # fmt: skip

POD_NAME = "microcue-worker-test"
POD_IP = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubelet_env(c: Obj, objects: list[Obj], secret: dict[str, str], port: int) -> dict[str, str]:
    """The container's environment as the kubelet makes it, then the loopback replacements."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    fields = {"metadata.name": POD_NAME, "status.podIP": POD_IP}
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], item["value"])
        elif "secretKeyRef" in item["valueFrom"]:
            env[item["name"]] = secret[item["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
    # What differs outside a cluster (see the module docstring).
    assert env["MICROCUE_HOST"] == "0.0.0.0"
    env["MICROCUE_HOST"] = "127.0.0.1"
    assert env["MICROCUE_MQTT_URL"].startswith("mqtt://mosquitto:")
    env["MICROCUE_MQTT_URL"] = f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}"
    if "MICROCUE_PORT" in env:  # the init container listens on nothing
        declared_port = env["MICROCUE_PORT"]
        env["MICROCUE_PORT"] = str(port)
        if "MICROCUE_WORKER_URL" in env:
            env["MICROCUE_WORKER_URL"] = env["MICROCUE_WORKER_URL"].replace(f":{declared_port}", f":{port}")
    env["MICROCUE_MODEL_DIR"] = str(Settings().model_dir.expanduser())  # the image's ENV
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MICROCUE_")}
    return {**keep, **env}


def start(c: Obj, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # The image's ENTRYPOINT is `microcue`; this checkout's console script is bridge.cli's main.
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "web.cli", *c["args"]], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def wait_ready(c: Obj, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Ready within what the startup probe allows (period x failure threshold)."""
    startup = c["startupProbe"]
    deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
    while probe(port, c["readinessProbe"]["httpGet"]["path"]) != 200:
        assert proc.poll() is None, f"{c['name']} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"{c['name']} not ready within its startup probe:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.5)
    assert probe(port, c["livenessProbe"]["httpGet"]["path"]) == 200


def stop_like_the_kubelet(workload: Obj, c: Obj, proc: subprocess.Popen[bytes]) -> tuple[float, int]:
    """preStop runs first (a sleep: nothing to do here), then SIGTERM; returns (seconds to exit, budget)."""
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    budget = pod_spec(workload)["terminationGracePeriodSeconds"] - pre_stop
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{c['name']} did not exit within its grace period ({budget} s after preStop)")
    return time.monotonic() - started, budget


@pytest.fixture
def secret(tmp_path: Path) -> Iterator[dict[str, str]]:
    require_service("Mosquitto", MOSQUITTO)
    for settings in database_settings("postgresql", tmp_path, "deploy_pods"):
        yield {
            "MICROCUE_DATABASE_URL": settings.database_url,
            "MICROCUE_API_KEY": secrets.token_hex(16),
            "POSTGRES_PASSWORD": "unused-outside-small-install",
        }


def test_web_and_worker_pods_start_probe_and_stop_as_declared(
    secret: dict[str, str], tmp_path: Path, report: Callable[[str], None]
) -> None:
    objects = rendered("base")
    web_deployment = find(objects, "Deployment", "microcue-web")
    worker_deployment = find(objects, "Deployment", "microcue-worker")
    web, worker = container(web_deployment, "web"), container(worker_deployment, "worker")
    (migrate,) = pod_spec(web_deployment)["initContainers"]

    web_port, worker_port = free_port(), free_port()
    init_env = kubelet_env(migrate, objects, secret, web_port)
    init = subprocess.run([sys.executable, "-m", "web.cli", *migrate["args"]], env=init_env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert init.returncode == 0, init.stderr

    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    web_proc = start(web, kubelet_env(web, objects, secret, web_port), web_log)
    worker_proc = start(worker, kubelet_env(worker, objects, secret, worker_port), worker_log)
    try:
        wait_ready(web, web_proc, web_port, web_log)
        wait_ready(worker, worker_proc, worker_port, worker_log)
        with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        assert re.search(r"^microcue_worker_participants(\{[^}]*\})? 0(\.0)?$", metrics, re.M), metrics[-2000:]
        worker_stop_s, worker_budget = stop_like_the_kubelet(worker_deployment, worker, worker_proc)
        web_stop_s, web_budget = stop_like_the_kubelet(web_deployment, web, web_proc)
    finally:
        for proc in (web_proc, worker_proc):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert worker_proc.returncode == 0, worker_log.read_text()[-3000:]
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM so the exit status says why
    # it stopped (143 in Kubernetes' terms); what matters is that the shutdown completed first.
    assert web_proc.returncode in (0, -signal.SIGTERM), web_log.read_text()[-3000:]
    assert "Application shutdown complete" in web_log.read_text()
    report(
        f"deploy pods: idle worker exited {worker_stop_s:.1f} s after SIGTERM (budget {worker_budget} s), "
        f"web {web_stop_s:.1f} s (budget {web_budget} s)"
    )

"""deploy/k8s rendered for tests: ``kubectl kustomize`` (or ``kustomize build``) where installed,
else the strict subset in tests/support/kustomize_lite.py; and small accessors for the objects."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.kustomize_lite import render

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"

Obj = dict[str, Any]


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render_with_tool(directory: Path) -> list[Obj]:
    command = kustomize_command()
    assert command is not None
    proc = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{' '.join(command)} {directory} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


_RENDERED: dict[str, list[Obj]] = {}


def render_dir(directory: Path) -> list[Obj]:
    return render_with_tool(directory) if kustomize_command() else render(directory)


def rendered(overlay: str) -> list[Obj]:
    if overlay not in _RENDERED:
        _RENDERED[overlay] = render_dir(K8S / overlay)
    return _RENDERED[overlay]


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]


def container(workload: Obj, name: str) -> Obj:
    return next(c for c in pod_spec(workload)["containers"] if c["name"] == name)


def env_value(c: Obj, name: str) -> str:
    return next(e["value"] for e in c["env"] if e["name"] == name)


def container_port(c: Obj, port: int | str) -> int:
    """A probe's or a Service's port, resolved through the container's named ports."""
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p["name"] == port)


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    yield from (o for o in objects if o["kind"] in ("Deployment", "StatefulSet"))

"""The runtime image installs no system packages: every shared library that microcue's installed
dependencies link against must come inside their wheels, or be one the slim Debian base always has.

A new dependency that needs, say, libGL (a classic with OpenCV builds) would make pods crash on
import; this finds it without a Docker engine, from the dependencies installed here (the same
wheels pip picks in the image, Linux x86_64). CUDA libraries are allowed: ONNX Runtime loads them
only for its GPU providers, and the Dockerfile's `gpu` stage installs them.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.services import services_required

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: In debian:bookworm-slim (python:3.11-slim-bookworm's base): glibc (libc6), libgcc-s1,
#: libstdc++6 (apt needs both) and zlib1g (priority required).
BASE_IMAGE_LIBRARIES = frozenset({
    "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libmvec.so.1", "libdl.so.2", "libpthread.so.0",
    "librt.so.1", "libutil.so.1", "libresolv.so.2", "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1",
})  # fmt: skip
#: Loaded only by ONNX Runtime's CUDA / TensorRT providers (the image's `gpu` stage, the node's driver).
GPU_ONLY = re.compile(r"^lib(cuda|cudart|cublas|cublasLt|cudnn|curand|cufft|nvinfer|nvonnxparser|nvrtc)\b")
#: LiteRT's accelerator plugins (Intel OpenVINO and Qualcomm NPUs): dlopen()ed only when that
#: accelerator is configured; MicroCue runs LiteRT on the CPU (XNNPACK) and never loads them.
ACCELERATOR_PLUGINS = re.compile(r"^libLiteRt(CompilerPlugin|Dispatch)_")
#: CPython's own shared objects link against libpython's symbols, provided by the interpreter.
INTERPRETER = re.compile(r"^libpython3")


def readelf() -> str:
    found = shutil.which("readelf")
    if found:
        return found
    if services_required():
        pytest.fail("readelf (Debian package binutils) is not installed", pytrace=False)
    pytest.skip("readelf (Debian package binutils) is not installed")


def runtime_distributions() -> set[str]:
    """microcue and everything it requires on this platform, without extras (what the image installs)."""
    seen: set[str] = set()
    todo = ["microcue"]
    while todo:
        name = md.distribution(todo.pop()).metadata["Name"].lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for spec in md.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            try:
                md.distribution(requirement.name)
            except md.PackageNotFoundError:
                pytest.fail(f"{name} requires {requirement.name}, which is not installed")
            todo.append(requirement.name)
    return seen


def shared_objects(distributions: set[str]) -> list[Path]:
    found = []
    for name in distributions:
        dist = md.distribution(name)
        for file in dist.files or []:
            if re.search(r"\.so(\.[0-9A-Za-z]+)*$", file.name):
                found.append(Path(str(dist.locate_file(file))))
    return found


def needed(path: Path) -> list[str]:
    proc = subprocess.run([readelf(), "-d", str(path)], capture_output=True, text=True, timeout=30, check=False)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", proc.stdout)


def test_dependencies_need_no_system_package_beyond_the_slim_base() -> None:
    distributions = runtime_distributions()
    assert {"onnxruntime-gpu", "opencv-python-headless", "av"} & distributions, distributions
    objects = shared_objects(distributions)
    assert len(objects) > 10, "found almost no shared objects: the scan is broken"
    bundled = {p.name for p in objects}
    missing: dict[str, set[str]] = {}
    for path in objects:
        if ACCELERATOR_PLUGINS.match(path.name):
            continue
        for library in needed(path):
            if library in bundled or library in BASE_IMAGE_LIBRARIES:
                continue
            if GPU_ONLY.match(library) or INTERPRETER.match(library):
                continue
            missing.setdefault(library, set()).add(path.name)
    assert not missing, f"shared libraries the slim image lacks (add them to the Dockerfile): {missing}"


def test_the_scan_sees_a_missing_library() -> None:
    """Not a no-op: ONNX Runtime's CUDA provider does need CUDA, which only the gpu stage has."""
    objects = shared_objects(runtime_distributions())
    cuda_users = [p for p in objects if any(GPU_ONLY.match(lib) for lib in needed(p))]
    assert cuda_users, "no object needs a CUDA library: readelf output is not being read"

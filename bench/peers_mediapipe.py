"""MediaPipe's legacy FaceMesh with iris over one clip; run by ``bench/peers.py`` in its own venv.

Standalone on purpose (no microcue import): mediapipe 0.10.21 pins numpy<2 and brings
opencv-contrib, so it lives in ``.venv-peers``. Decodes with PyAV exactly as ``microcue
analyze`` does (``to_ndarray(format="rgb24")``), and prints one JSON line:
``{"frames", "seconds", "ms_per_frame", "cpu_ms_per_frame", "first_frame_ms", "face_frames", "mediapipe"}``.
Like ``microcue analyze``'s figure, the time per frame runs from the end of the first frame to
the last, decode included, model loading and the first frame's one-time set-up excluded.

    .venv-peers/bin/python bench/peers_mediapipe.py CLIP
"""

from __future__ import annotations

import json
import sys
import time

import av
import mediapipe as mp


def main(argv: list[str]) -> int:
    (clip,) = argv
    # refine_landmarks=True adds the iris model: 478 points, the same three models microcue runs.
    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False,
        max_num_faces=1,
        refine_landmarks=True,
        min_detection_confidence=0.5,
        min_tracking_confidence=0.5,
    )
    frames = faces = 0
    with av.open(clip) as container:
        started, cpu_started = time.perf_counter(), time.process_time()
        first = (0.0, 0.0)
        for frame in container.decode(video=0):
            result = mesh.process(frame.to_ndarray(format="rgb24"))
            frames += 1
            faces += result.multi_face_landmarks is not None
            if frames == 1:  # one-time set-up, timed apart as microcue analyze does
                first = (time.perf_counter() - started, time.process_time() - cpu_started)
        seconds = time.perf_counter() - started - first[0]
        cpu = time.process_time() - cpu_started - first[1]
    steady = max(frames - 1, 1)
    mesh.close()
    print(
        json.dumps(
            {
                "frames": frames,
                "seconds": round(seconds, 4),
                "ms_per_frame": round(1000 * seconds / steady, 3),
                "cpu_ms_per_frame": round(1000 * cpu / steady, 3),
                "first_frame_ms": round(1000 * first[0], 3),
                "face_frames": faces,
                "mediapipe": mp.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

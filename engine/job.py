"""A job as it crosses process and module boundaries: one typed shape, one encoding.

The bot hands a `JobSpec` to an executor, which carries it to a worker process (a spawned
process of the local pool, or a Celery worker on another machine). The worker reports
`Progress` and ends with a `JobOutcome`. These dataclasses are that shape on both sides.

`encode` turns any of them into JSON-safe values (bytes become base64 text) and `decode`
turns those back, for transports that carry JSON (Celery and its Redis backend). The local
pool's pipes pickle the dataclasses as they are.

`JobState` (a job's row in SQLite) and `EventKind` (what the job manager tells the bot) are
here too, so that no layer spells a state as a bare string.

This module imports neither TensorFlow nor anything of the bot.
"""

from __future__ import annotations

import base64
import binascii
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from enum import Enum, StrEnum
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from engine.params import MAX_SIZE, StyleParams

T = TypeVar("T")

# Defaults the bot and the workers share (STYLEBOT_JOB_TIMEOUT and STYLEBOT_REDIS_URL override).
DEFAULT_JOB_TIMEOUT_S = 600.0
"""How long one job may run before it is stopped."""
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
"""Celery's broker and result backend."""


class JobState(StrEnum):
    """A job's state as stored: queued → running → done | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class EventKind(StrEnum):
    """What the job manager reports about a job, in this order (PREVIEW only for a job that
    waits, while it waits)."""

    QUEUED = "queued"
    PREVIEW = "preview"
    """A first look at a job that still waits for a worker (it stays queued)."""
    STARTED = "started"
    PROGRESS = "progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OutcomeStatus(StrEnum):
    DONE = "done"
    REJECTED = "rejected"
    """The engine refused the input; never worth retrying."""
    CANCELLED = "cancelled"
    TIMED_OUT = "timeout"
    FAILED = "failed"


class FailureCode(StrEnum):
    """Why a job did not end with a picture: a stable code the bot turns into a sentence.

    A refused picture carries its `engine.errors.ImageError.code` instead (``empty_file``,
    ``image_too_small``, ...).
    """

    BAD_PARAMS = "bad_params"
    TIMED_OUT = "timed_out"
    WORKER_LOST = "worker_lost"
    ENGINE_DOWN = "engine_down"
    INPUTS_LOST = "inputs_lost"
    FAILED = "failed"


@dataclass(frozen=True)
class Progress:
    """One progress report, sent between optimizer steps."""

    scale: int
    """0-based index of the current scale (coarsest is 0)."""
    scales: int
    step: int
    """Steps done so far over all scales."""
    total_steps: int
    loss: float
    style_loss: float
    content_loss: float
    tv_loss: float
    elapsed: float
    """Seconds since the job started (decoding and model build included)."""
    eta: float
    """Estimated seconds left."""
    preview: bytes | None = None
    """A small JPEG of the picture so far; set once at the end of each scale but the last."""

    @property
    def fraction(self) -> float:
        return 0.0 if self.total_steps <= 0 else min(1.0, self.step / self.total_steps)

    @property
    def is_last(self) -> bool:
        return self.step >= self.total_steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Result:
    image: bytes
    """The stylized picture, encoded as `params.output_format`."""
    width: int
    height: int
    losses: dict[str, float] = field(default_factory=dict)
    """total, style, content, tv: on the weighted objective of the final scale."""
    timings: dict[str, float] = field(default_factory=dict)
    """decode, model, optimize, encode, total (seconds)."""
    mime_type: str = "image/jpeg"
    device: str = ""
    """What painted it, for people: e.g. "CPU (avx512_bf16, bfloat16)" or "GPU NVIDIA L4
    (bfloat16)". Empty when unknown."""
    megapixel_steps: float = 0.0
    """The optimisation's work: Σ over scales of steps × megapixels. `timings["optimize"]`
    divided by it is the worker's measured speed, from which the bot estimates other sizes."""


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to paint one picture."""

    job_id: str
    content: bytes
    styles: tuple[bytes, ...]
    params: StyleParams = field(default_factory=StyleParams)
    init: bytes | None = None
    """A previous result to warm-start from (same pair, another setting)."""


def time_limit(spec: JobSpec, base: float = DEFAULT_JOB_TIMEOUT_S) -> float:
    """How long `spec` may run. `base` (STYLEBOT_JOB_TIMEOUT) is the limit for a painting at
    the reference size; bigger work gets proportionally more time (a full-resolution 2048 px
    painting plans ~8x the work of a 512 px one), never less than `base`."""
    work = spec.params.planned_megapixel_steps(warm_start=spec.init is not None)
    return base * max(1.0, work / _REFERENCE_WORK)


def longest_time_limit(base: float = DEFAULT_JOB_TIMEOUT_S) -> float:
    """The largest `time_limit` any job can get (Celery's visibility timeout must exceed it)."""
    return base * max(1.0, StyleParams(size=MAX_SIZE).planned_megapixel_steps() / _REFERENCE_WORK)


_REFERENCE_WORK = StyleParams().planned_megapixel_steps()


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended in the worker: a `Result`, or a status with a code and a message."""

    status: OutcomeStatus
    result: Result | None = None
    code: str = ""
    """A `FailureCode` or an `ImageError.code`; empty when done."""
    message: str = ""
    """The engine's own sentence (English), kept for logs and as a fallback."""

    @classmethod
    def done(cls, result: Result) -> JobOutcome:
        return cls(OutcomeStatus.DONE, result=result)

    @classmethod
    def rejected(cls, code: str, message: str) -> JobOutcome:
        return cls(OutcomeStatus.REJECTED, code=code, message=message)

    @classmethod
    def cancelled(cls) -> JobOutcome:
        return cls(OutcomeStatus.CANCELLED)

    @classmethod
    def timed_out(cls) -> JobOutcome:
        return cls(OutcomeStatus.TIMED_OUT, code=FailureCode.TIMED_OUT)

    @classmethod
    def failed(cls, message: str, code: str = FailureCode.FAILED) -> JobOutcome:
        return cls(OutcomeStatus.FAILED, code=code, message=message)


JobFunction = Callable[[JobSpec, ProgressCallback, CancelCheck], JobOutcome]
"""What a worker calls for each job (`engine.worker.run_job`; tests swap in light ones)."""


# -- the encoding ---------------------------------------------------------------------------
class DecodeError(ValueError):
    """Data that does not have the shape of the type asked for."""


def encode(value: Any) -> Any:
    """JSON-safe values for a dataclass of this module (or anything made of them)."""
    if isinstance(value, StyleParams):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    return value


def decode(kind: type[T], data: Any) -> T:
    """The inverse of `encode`: rebuild a `kind` from JSON-safe values, checking their shape."""
    try:
        value: T = _decode(kind, data)
    except DecodeError:
        raise
    except (TypeError, ValueError, KeyError, binascii.Error) as error:
        raise DecodeError(f"not a {getattr(kind, '__name__', kind)}: {error}") from error
    return value


def _decode(kind: Any, data: Any) -> Any:
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(kind) if arg is not type(None)]
        if data is None and len(options) < len(get_args(kind)):
            return None
        if len(options) != 1:
            raise DecodeError(f"cannot decode the union {kind}")
        return _decode(options[0], data)
    if origin is tuple:
        item_kind = get_args(kind)[0]
        return tuple(_decode(item_kind, item) for item in _sequence(data))
    if origin is list:
        return [_decode(get_args(kind)[0], item) for item in _sequence(data)]
    if origin is dict:
        key_kind, item_kind = get_args(kind)
        if not isinstance(data, dict):
            raise DecodeError(f"expected a mapping, not {type(data).__name__}")
        return {_decode(key_kind, k): _decode(item_kind, v) for k, v in data.items()}
    if kind is StyleParams:
        if not isinstance(data, dict):
            raise DecodeError("parameters must be a mapping")
        return StyleParams.from_dict(data)
    if isinstance(kind, type) and is_dataclass(kind):
        if not isinstance(data, dict):
            raise DecodeError(f"expected a mapping for {kind.__name__}")
        hints = get_type_hints(kind)
        known = {f.name for f in fields(kind)}
        unknown = set(data) - known
        if unknown:
            raise DecodeError(f"unknown fields of {kind.__name__}: {', '.join(sorted(unknown))}")
        return kind(**{name: _decode(hints[name], value) for name, value in data.items()})
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(data)
    if kind is bytes:
        if not isinstance(data, str):
            raise DecodeError("expected base64 text")
        return base64.b64decode(data, validate=True)
    if kind is bool:
        if not isinstance(data, bool):
            raise DecodeError(f"expected true or false, not {data!r}")
        return data
    if kind is str:
        if not isinstance(data, str):
            raise DecodeError(f"expected text, not {type(data).__name__}")
        return data
    if kind in (int, float):
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise DecodeError(f"expected a number, not {type(data).__name__}")
        if kind is int and isinstance(data, float) and not data.is_integer():
            raise DecodeError(f"expected a whole number, not {data}")
        return kind(data)
    if kind is Any:
        return data
    raise DecodeError(f"cannot decode {kind}")


def _sequence(data: Any) -> list[Any]:
    if not isinstance(data, list | tuple):
        raise DecodeError(f"expected a list, not {type(data).__name__}")
    return list(data)

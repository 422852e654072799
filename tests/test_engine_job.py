"""The typed job shape and its one encoding (engine.job)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.jobmeta import JobMeta
from engine.job import (
    DecodeError,
    FailureCode,
    JobOutcome,
    JobSpec,
    JobState,
    OutcomeStatus,
    Progress,
    Result,
    decode,
    encode,
)
from engine.params import StyleParams


def _round_trip(value: object) -> object:
    wire = json.loads(json.dumps(encode(value)))  # what Celery's JSON serializer carries
    return decode(type(value), wire)


def test_a_spec_survives_json() -> None:
    spec = JobSpec(
        "j1",
        b"\xff\xd8photo",
        (b"style-1", b"\x00style-2"),
        StyleParams(size=64, steps=(3, 4), style_blend=(1.0, 2.0), extra={"k": [1]}),
        init=b"init",
    )
    again = _round_trip(spec)
    assert again == spec and isinstance(again, JobSpec)
    assert again.params.extra == {"k": [1]} and again.styles == spec.styles


def test_outcomes_and_progress_survive_json() -> None:
    result = Result(b"img", 4, 3, losses={"total": 1.5}, timings={"total": 2.0})
    for outcome in (
        JobOutcome.done(result),
        JobOutcome.rejected("image_too_small", "Too small."),
        JobOutcome.cancelled(),
        JobOutcome.timed_out(),
        JobOutcome.failed("boom"),
    ):
        again = _round_trip(outcome)
        assert again == outcome
        assert isinstance(again, JobOutcome) and isinstance(again.status, OutcomeStatus)
    progress = Progress(1, 2, 30, 60, 1.0, 0.5, 0.5, 0.0, 3.0, 3.0, preview=b"jpeg")
    assert _round_trip(progress) == progress
    assert _round_trip(JobOutcome.timed_out()).code == FailureCode.TIMED_OUT  # type: ignore[attr-defined]


def test_decode_refuses_what_does_not_fit() -> None:
    good = encode(JobSpec("j", b"c", (b"s",)))
    for bad in (
        None,
        [],
        {**good, "content": "not base64!"},
        {**good, "styles": "abc"},
        {**good, "job_id": 7},
        {**good, "surprise": 1},
        {**good, "params": {"size": 10**9}},
        {**good, "params": {"no_such_param": 1}},
    ):
        with pytest.raises(DecodeError):
            decode(JobSpec, bad)
    with pytest.raises(DecodeError):
        decode(JobOutcome, {"status": "exploded"})
    with pytest.raises(DecodeError):
        decode(Progress, {**encode(Progress(0, 1, 1, 1, 1, 1, 1, 0, 0, 0)), "step": 1.5})


@given(
    pair=st.none() | st.text(max_size=20),
    name=st.text(max_size=40),
    preset=st.none() | st.integers(min_value=1, max_value=2**62),
    strength=st.integers(1, 5),
    colors=st.booleans(),
    size=st.none() | st.integers(64, 2048),
)
def test_job_meta_round_trips(
    pair: str | None, name: str, preset: int | None, strength: int, colors: bool, size: int | None
) -> None:
    meta = JobMeta(pair, name, preset, None, strength, colors, size)
    assert JobMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta


def test_states_are_one_vocabulary() -> None:
    assert {s for s in JobState if s.finished} == {"done", "failed", "cancelled"}
    assert JobState("queued") is JobState.QUEUED


def test_time_limit_grows_with_the_work_and_never_goes_below_the_base() -> None:
    from engine.job import longest_time_limit, time_limit

    def limit(size: int, warm: bool = False) -> float:
        spec = JobSpec("j", b"c", (b"s",), StyleParams(size=size), init=b"i" if warm else None)
        return time_limit(spec, 600.0)

    assert limit(256) == limit(512) == 600.0  # the base covers the reference size
    assert limit(2048) > 5 * 600.0  # ~8x the work of 512 px
    assert limit(1024, warm=True) < limit(1024)  # a warm start runs fewer steps
    assert max(limit(s) for s in (512, 1024, 1536, 2048)) <= longest_time_limit(600.0)

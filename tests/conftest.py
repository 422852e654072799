"""Fixtures shared by every test module: where the shared images and weights are.

Tests that need `../shared` skip with a reason when it is absent; everything else runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# No wall-clock bound decides a test: Hypothesis's default 200 ms deadline per example (and its
# too-slow health check) would fail property tests on a slower or busier machine.
hypothesis_settings.register_profile(
    "stylebot", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("stylebot")

REPO_DIR = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("STYLEBOT_SHARED_DIR", REPO_DIR.parent / "shared"))
IMAGES_DIR = SHARED_DIR / "images"
CONTENT_DIR = IMAGES_DIR / "content"
STYLES_DIR = IMAGES_DIR / "styles"
BAD_DIR = IMAGES_DIR / "bad"
RANDOM_WEIGHTS = SHARED_DIR / "models" / "vgg19_random_notop.weights.h5"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared test material is not beside the repo)")
    return path


@pytest.fixture
def content_path() -> Path:
    return _require(CONTENT_DIR / "tubingen.jpg")


@pytest.fixture
def style_path() -> Path:
    return _require(STYLES_DIR / "sunday_on_la_grande_jatte.jpg")


@pytest.fixture
def bad_dir() -> Path:
    return _require(BAD_DIR)


@pytest.fixture(scope="session")
def test_weights() -> str:
    """Weights for engine tests: the shared random file if present, else a seeded random init."""
    return str(RANDOM_WEIGHTS) if RANDOM_WEIGHTS.exists() else "random"


def shared_file(*parts: str) -> Path:
    """A file under ../shared, or a skip with a reason when it is not there."""
    return _require(SHARED_DIR.joinpath(*parts))

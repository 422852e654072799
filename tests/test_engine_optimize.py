"""The optimisers on cheap NumPy problems: bounds, budgets, early stop, cancellation."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import Cancelled
from engine.objective import LossParts
from engine.optimize import GradientScaling, LbfgsSettings, run_adam, run_lbfgs


class Quadratic:
    """Σ scale·(x − centre)², ill-conditioned, with its minimum partly outside [0, 255]."""

    def __init__(self, shape: tuple[int, ...] = (6, 5, 3), seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.scale = rng.uniform(0.5, 50.0, shape).astype(np.float32)
        self.centre = rng.uniform(-60.0, 320.0, shape).astype(np.float32)
        self.calls = 0

    def __call__(self, image: np.ndarray) -> tuple[LossParts, np.ndarray]:
        self.calls += 1
        d = image - self.centre
        value = float(np.sum(self.scale * d * d))
        return LossParts(value, value, 0.0, 0.0), (2.0 * self.scale * d).astype(np.float32)

    @property
    def solution(self) -> np.ndarray:
        return np.clip(self.centre, 0.0, 255.0)


def test_lbfgs_finds_the_minimum_inside_the_box() -> None:
    problem = Quadratic()
    start = np.full(problem.centre.shape, 128.0, np.float32)
    best = run_lbfgs(problem, start, 200)
    assert best.image.min() >= 0.0 and best.image.max() <= 255.0
    # float32: the loss (~1e6) resolves pixel errors down to a few hundredths.
    optimum, _ = Quadratic()(problem.solution)
    assert best.parts.total <= optimum.total * (1 + 1e-6)
    np.testing.assert_allclose(best.image, problem.solution, atol=0.2)
    assert best.image.dtype == np.float32 and best.image.shape == start.shape


def test_lbfgs_never_evaluates_more_than_its_budget() -> None:
    for steps in (1, 2, 7, 30):
        problem = Quadratic(seed=steps)
        run_lbfgs(problem, np.full(problem.centre.shape, 128.0, np.float32), steps)
        assert problem.calls == steps


def test_lbfgs_stops_when_the_target_loss_is_reached() -> None:
    problem = Quadratic()
    start = np.full(problem.centre.shape, 128.0, np.float32)
    full = run_lbfgs(Quadratic(), start, 200)
    first, _ = Quadratic()(start)
    target = first.total * 0.5
    best = run_lbfgs(problem, start, 200, target_loss=target)
    assert best.parts.total <= target
    assert problem.calls < 200 and best.parts.total > full.parts.total


def test_lbfgs_reports_every_step_and_keeps_the_best() -> None:
    problem = Quadratic()
    seen: list[tuple[int, float]] = []
    best = run_lbfgs(
        problem,
        np.full(problem.centre.shape, 128.0, np.float32),
        25,
        on_step=lambda done, parts, image: seen.append((done, parts.total)),
    )
    assert [done for done, _ in seen] == list(range(1, 26))
    assert best.parts.total == min(total for _, total in seen)


def test_lbfgs_is_cancelled_before_the_next_evaluation() -> None:
    problem = Quadratic()
    checks = 0

    def should_cancel() -> bool:
        nonlocal checks
        checks += 1
        return checks > 4

    with pytest.raises(Cancelled):
        run_lbfgs(
            problem, np.full(problem.centre.shape, 128.0, np.float32), 50, None, should_cancel
        )
    assert problem.calls == 4


def test_lbfgs_history_and_first_step_are_settings() -> None:
    start = np.full((6, 5, 3), 128.0, np.float32)
    for settings in (LbfgsSettings(history=1), LbfgsSettings(history=50, first_step=100.0)):
        best = run_lbfgs(Quadratic(), start, 300, settings=settings)
        np.testing.assert_allclose(best.image, Quadratic().solution, atol=0.5)


def test_zero_steps_evaluates_the_start_once() -> None:
    problem = Quadratic()
    start = np.full(problem.centre.shape, 128.0, np.float32)
    for run in (run_lbfgs, run_adam):
        best = run(problem, start, 0)
        np.testing.assert_array_equal(best.image, start)


def test_a_job_with_a_target_loss_ends_its_final_scale_early() -> None:
    pytest.importorskip("tensorflow")
    from engine.api import Progress, stylize
    from engine.params import StyleParams
    from tests.conftest import RANDOM_WEIGHTS
    from tests.engine_helpers import synthetic_photo, synthetic_style

    weights = str(RANDOM_WEIGHTS) if RANDOM_WEIGHTS.exists() else "random"
    # No quick pass: its steps would count in `Progress.step` before the final scale's.
    params = StyleParams(size=64, steps=(20,), min_scale_side=32, quick_pass_steps=0)
    full = stylize(synthetic_photo(), [synthetic_style()], params, weights=weights)
    reports: list[Progress] = []
    target = full.losses["total"] * 3
    early = stylize(
        synthetic_photo(),
        [synthetic_style()],
        params.replace(target_loss=target),
        on_progress=reports.append,
        weights=weights,
    )
    assert early.losses["total"] <= target
    assert max(r.step for r in reports) < 20


def test_lbfgs_keeps_moving_when_the_loss_is_slightly_noisy() -> None:
    # The real objective is reproducible only to ~1e-4 (bfloat16, threaded sums); near the
    # optimum a step's gain drowns in that, and a strict line search retried one refused step.
    problem = Quadratic()
    exact: list[float] = []

    def noisy(image: np.ndarray) -> tuple[LossParts, np.ndarray]:
        parts, gradient = problem(image)
        exact.append(parts.total)
        value = parts.total * (1.0 + 5e-5 * np.sin(problem.calls * 2.7))
        return LossParts(value, value, 0.0, 0.0), gradient

    run_lbfgs(noisy, np.full(problem.centre.shape, 128.0, np.float32), 300)
    optimum, _ = Quadratic()(problem.solution)
    assert min(exact) <= optimum.total * (1 + 1e-6)


def test_the_starting_inverse_hessian_smooths_and_stays_positive_definite() -> None:
    rng = np.random.default_rng(3)
    shape = (40, 30, 3)
    smooth = LbfgsSettings().preconditioner(shape)
    plain = LbfgsSettings(smoothing=0.0).preconditioner(shape)
    vectors = rng.standard_normal((20, 40 * 30 * 3)).astype(np.float32)
    for vector in vectors:
        np.testing.assert_array_equal(plain(vector), vector)
        smoothed = smooth(vector)
        assert smoothed.dtype == np.float32 and smoothed.shape == vector.shape
        # Positive definite (the L-BFGS direction stays a descent direction) ...
        assert float(np.dot(vector, smoothed)) > 0.0
        # ... passing a constant change through and damping pixel-to-pixel noise.
        assert float(np.linalg.norm(smoothed)) < 0.5 * float(np.linalg.norm(vector))
    constant = np.full(40 * 30 * 3, 2.0, np.float32)
    np.testing.assert_allclose(smooth(constant), constant, rtol=1e-5)


def test_lbfgs_with_and_without_smoothing_finds_the_minimum() -> None:
    start = np.full((6, 5, 3), 128.0, np.float32)
    for settings in (LbfgsSettings(), LbfgsSettings(smoothing=0.0)):
        best = run_lbfgs(Quadratic(), start, 300, settings=settings)
        np.testing.assert_allclose(best.image, Quadratic().solution, atol=0.5)


def test_the_gradient_scaling_shrinks_steps_where_the_gradient_stays_large() -> None:
    shape = (4, 5, 3)
    scaling = GradientScaling(shape, exponent=0.75, memory=0.9)
    gradient = np.ones(shape, np.float32)
    gradient[0, 0] = 10.0  # one pixel's gradient is ten times the rest's
    for _ in range(3):
        root = scaling.root(gradient.ravel())
    assert root is not None and root.dtype == np.float32 and root.shape == (4 * 5 * 3,)
    diagonal = np.square(root).reshape(shape)
    assert np.all(diagonal > 0.0)
    np.testing.assert_allclose(diagonal.mean(), 1.0, rtol=1e-5)  # only the balance changes
    # A pixel with 100 times the squared gradient takes 100^(−0.75/2) of the step, in each channel.
    np.testing.assert_allclose(diagonal[0, 0] / diagonal[1, 1], 100**-0.375, rtol=0.02)
    # Off, and for a gradient that vanished everywhere, it stays harmless.
    assert GradientScaling(shape, exponent=0.0, memory=0.9).root(gradient.ravel()) is None
    flat = GradientScaling(shape, exponent=0.75, memory=0.9).root(np.zeros(4 * 5 * 3, np.float32))
    assert flat is not None and np.all(np.isfinite(flat))


def test_lbfgs_with_and_without_the_scaled_start_finds_the_minimum() -> None:
    start = np.full((6, 5, 3), 128.0, np.float32)
    for settings in (
        LbfgsSettings(),
        LbfgsSettings(gamma_scale=1.0, gradient_scaling=0.0),
        LbfgsSettings(gamma_scale=3.0, gradient_scaling=1.0, smoothing=0.0),
    ):
        best = run_lbfgs(Quadratic(), start, 300, settings=settings)
        np.testing.assert_allclose(best.image, Quadratic().solution, atol=0.5)

"""Optimisers over one scale: L-BFGS-B (default) and the reference recipe's Adam.

Both count a "step" as one evaluation of loss and gradient (one forward and backward pass),
the unit that costs time, keep the best picture seen, report after every step and check for
cancellation between steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from engine.errors import Cancelled
from engine.objective import LossParts

PIXEL_MIN = 0.0
PIXEL_MAX = 255.0
# L-BFGS memory: more pairs help on this ill-conditioned objective and cost little.
LBFGS_HISTORY = 20

Evaluate = Callable[[np.ndarray], tuple[LossParts, np.ndarray]]
StepCallback = Callable[[int, LossParts, np.ndarray], None]
"""Called after every step with the number of steps done, the loss parts and the picture."""
CancelCheck = Callable[[], bool]


class _BudgetSpent(Exception):
    """Raised inside the objective when the step budget is used (scipy may ask for more)."""


@dataclass
class Best:
    image: np.ndarray
    parts: LossParts


class _Tracker:
    """Counts evaluations, keeps the best one, reports, and honours cancellation."""

    def __init__(
        self,
        evaluate: Evaluate,
        steps: int,
        on_step: StepCallback | None,
        should_cancel: CancelCheck | None,
    ) -> None:
        self.evaluate = evaluate
        self.steps = steps
        self.on_step = on_step
        self.should_cancel = should_cancel
        self.done = 0
        self.best: Best | None = None

    def __call__(self, image: np.ndarray) -> tuple[LossParts, np.ndarray]:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled()
        parts, gradient = self.evaluate(image)
        self.done += 1
        if self.best is None or parts.total < self.best.parts.total:
            self.best = Best(image.copy(), parts)
        if self.on_step is not None:
            self.on_step(self.done, parts, image)
        return parts, gradient


def _result(tracker: _Tracker, fallback: np.ndarray) -> Best:
    if tracker.best is None:  # zero steps asked: nothing evaluated
        parts, _ = tracker.evaluate(fallback)
        return Best(fallback, parts)
    return tracker.best


def run_lbfgs(
    evaluate: Evaluate,
    start: np.ndarray,
    steps: int,
    on_step: StepCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> Best:
    """Minimise with scipy's L-BFGS-B, pixels bounded to [0, 255], at most `steps` evaluations."""
    tracker = _Tracker(evaluate, steps, on_step, should_cancel)
    shape = start.shape

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        if tracker.done >= steps:
            raise _BudgetSpent
        parts, gradient = tracker(flat.reshape(shape).astype(np.float32))
        return parts.total, gradient.astype(np.float64).ravel()

    if steps > 0:
        with contextlib.suppress(_BudgetSpent):
            minimize(
                fun,
                start.astype(np.float64).ravel(),
                jac=True,
                method="L-BFGS-B",
                bounds=[(PIXEL_MIN, PIXEL_MAX)],
                # Stop on the step budget only: the loss is in the 1e4–1e8 range, where scipy's
                # default tolerances end the run long before the picture has converged.
                # The evaluation budget is enforced by `fun`; scipy's own limits sit above it.
                options={
                    "maxiter": 2 * steps + 10,
                    "maxfun": 2 * steps + 10,
                    "maxcor": LBFGS_HISTORY,
                    "ftol": 0.0,
                    "gtol": 0.0,
                },
            )
    return _result(tracker, start)


def run_adam(
    evaluate: Evaluate,
    start: np.ndarray,
    steps: int,
    learning_rate: float = 5.0,
    beta_1: float = 0.99,
    beta_2: float = 0.999,
    epsilon: float = 0.1,
    on_step: StepCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> Best:
    """The reference recipe's optimiser (Keras Adam update, clipping, best pre-update image kept)."""
    tracker = _Tracker(evaluate, steps, on_step, should_cancel)
    image = start.astype(np.float32).copy()
    m: np.ndarray = np.zeros(image.shape, np.float64)
    v: np.ndarray = np.zeros(image.shape, np.float64)
    for t in range(1, steps + 1):
        _, gradient = tracker(image)
        m = beta_1 * m + (1 - beta_1) * gradient
        v = beta_2 * v + (1 - beta_2) * gradient * gradient
        rate = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        step = rate * m / (np.sqrt(v) + epsilon)
        image = np.clip(image - step, PIXEL_MIN, PIXEL_MAX).astype(np.float32)
    return _result(tracker, start)

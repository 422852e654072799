"""Optimisers over one scale: a float32 L-BFGS (default) and the reference recipe's Adam.

The L-BFGS keeps its vectors in float32 and handles the [0, 255] box by projection: measured
against scipy's L-BFGS-B (float64, kept here as `run_lbfgs_scipy` for the benchmarks), it
spends 18–34 ms instead of 0.77–0.95 s per step outside TensorFlow at 512×384, for a loss within
1 % after the same number of evaluations. Its inverse-Hessian estimate starts from a smoothing
operator instead of the identity (LBFGS_SMOOTHING), which reaches the same loss in ~15–25 %
fewer evaluations, and that operator is scaled per pixel by the gradient's running size and
by 1.5 overall (LBFGS_GRADIENT_SCALING, LBFGS_GAMMA_SCALE): ~11 % fewer again at 512 px
(docs/ARCHITECTURE.md, "Engine choices").

All count a "step" as one evaluation of loss and gradient (one forward and backward pass),
the unit that costs time, keep the best picture seen, report after every step and check for
cancellation between steps.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.optimize import minimize

from engine.errors import Cancelled
from engine.objective import LossParts

PIXEL_MIN = 0.0
PIXEL_MAX = 255.0
# L-BFGS memory: 20 pairs (2 float32 vectors each: 190 MB at 512 px) - 50 pairs measured 0.7 %
# lower after 210 evaluations at 256 px, 8 pairs 1.4 % higher.
LBFGS_HISTORY = 20
# The first step (along the gradient) moves the most-changed pixel by this much; later steps
# are capped at LBFGS_MAX_CHANGE, which stops the wild second step a one-pair history proposes.
LBFGS_FIRST_STEP = 8.0
LBFGS_MAX_CHANGE = 64.0
# Measured: after ~440 evaluations at 256 px, steps of a fraction of a pixel moved the loss up
# and down by ~5e-5 of its value, and Armijo backtracking then retried one refused step for good.
LBFGS_NOISE = 1e-4
# L-BFGS's starting inverse Hessian is γ·P instead of γ·I, P = (1 − w)·I + w·(Gaussian blur of
# σ px): it trusts smooth changes of the picture more than pixel-to-pixel ones. Measured at 256 px
# (tubingen + starry_night): the loss the plain one reaches after 200 evaluations is reached
# after ~150 with σ = 8, w = 0.875 (docs/ARCHITECTURE.md, "Engine choices").
LBFGS_SMOOTHING = 8.0
LBFGS_SMOOTHING_SHARE = 0.875
# The blur runs on 4×4-block means: the same loss as a full-size blur (measured at 256 px), for
# 6 ms instead of 17 ms per use at 512×384 (two uses per iteration).
LBFGS_SMOOTHING_BLOCK = 4
# γ of the starting inverse Hessian, sᵀy / yᵀPy, is the short end of the step sizes the newest
# pair supports (Barzilai–Borwein); L-BFGS's steps here then stop short of the line's minimum
# (the slope at the new point is still ~20 % of the old one). 1.5 times it measured 159 instead of
# 166 evaluations to the recipe's level at 512 px, ~8 % fewer at 256 px on three pairs.
LBFGS_GAMMA_SCALE = 1.5
# P is also scaled per pixel by D^½ on each side, D = v^(−exponent/2) normalised to mean 1, v a
# running mean (memory 0.9) of the squared gradient per pixel: pixels whose gradient stays large
# (edges, textured areas) take smaller steps, as Adam's per-coordinate scaling does. Measured at
# 512 px: 147 evaluations to the recipe's level (exponent 0.75) against 159 without, at 256 px 200
# against 221 (exponent 0.5: 152 and 201; 1.0: 148 and 207; memory 0.98: 166 at 512 px).
LBFGS_GRADIENT_SCALING = 0.75
LBFGS_GRADIENT_MEMORY = 0.9

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
    evaluations: int = 0
    """Loss-and-gradient evaluations the run made (its cost)."""


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
        return Best(fallback, parts, evaluations=1)
    return replace(tracker.best, evaluations=tracker.done)


@dataclass(frozen=True)
class LbfgsSettings:
    """Knobs of the float32 L-BFGS (defaults measured: docs/ARCHITECTURE.md, "Engine choices")."""

    history: int = LBFGS_HISTORY
    first_step: float = LBFGS_FIRST_STEP
    """Largest pixel change of the first step (0–255 scale); later steps are scaled by L-BFGS."""
    armijo: float = 1e-4
    """Sufficient decrease: a step is kept if the loss falls by this fraction of the prediction."""
    backtrack: float = 0.3
    """A refused step is shrunk at least to this fraction (interpolation inside it)."""
    max_change: float = LBFGS_MAX_CHANGE
    """Largest pixel change of any step: a trust region against wild early L-BFGS steps."""
    noise: float = LBFGS_NOISE
    """Relative loss change taken as noise: the objective is not exactly reproducible (bfloat16,
    threaded sums), and late in a run a step's predicted decrease falls to that level. A step
    whose loss rises by less is taken anyway (the best picture is kept regardless), so the
    history keeps moving instead of retrying the same refused step."""
    smoothing: float = LBFGS_SMOOTHING
    """σ (px) of the blur in the starting inverse Hessian γ·P (0: the plain γ·I)."""
    smoothing_share: float = LBFGS_SMOOTHING_SHARE
    """w in P = (1 − w)·I + w·blur: how much of a step's scale comes from smooth changes."""
    gamma_scale: float = LBFGS_GAMMA_SCALE
    """Factor on γ = sᵀy / yᵀPy of the starting inverse Hessian γ·P (1: the textbook γ)."""
    gradient_scaling: float = LBFGS_GRADIENT_SCALING
    """Exponent of the per-pixel scaling of P by the gradient's running size (0: none)."""
    gradient_memory: float = LBFGS_GRADIENT_MEMORY
    """Memory of the running mean of the squared gradient behind that scaling."""

    def preconditioner(self, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        """P for flat vectors of pictures of `shape` (height, width, channels)."""
        if self.smoothing <= 0 or self.smoothing_share <= 0:
            return lambda vector: vector
        height, width, _channels = shape  # a picture: (H, W, 3)
        block = LBFGS_SMOOTHING_BLOCK
        rows, columns = -(-height // block), -(-width // block)
        sigma = (self.smoothing / block, self.smoothing / block, 0.0)
        keep, share = np.float32(1.0 - self.smoothing_share), np.float32(self.smoothing_share)

        def block_sums(picture: np.ndarray) -> np.ndarray:
            padding = ((0, rows * block - height), (0, columns * block - width), (0, 0))
            blocks = np.pad(picture, padding).reshape(rows, block, columns, block, -1)
            # Slice by slice: ~1 ms at 512×384 against ~4 ms for NumPy's strided
            # blocks.sum(axis=(1, 3)) (the same sums, added in another order).
            across = functools.reduce(np.add, (blocks[:, :, :, i] for i in range(block)))
            return functools.reduce(np.add, (across[:, i] for i in range(block)))

        # Pixels per block (the last row and column of blocks may be partial).
        counts = block_sums(np.ones((height, width, 1), np.float32))

        def smooth(vector: np.ndarray) -> np.ndarray:
            # Blur the picture's block means, then spread each block's value back over its
            # pixels (see LBFGS_SMOOTHING_BLOCK). Apart from partial blocks at the edges this
            # is DᵀGD up to a factor (D: block means, G: the Gaussian), symmetric and positive
            # semi-definite, so P is positive definite as L-BFGS needs.
            means = block_sums(vector.reshape(shape)) / counts
            blurred = gaussian_filter(means, sigma, truncate=3.0)
            spread = np.repeat(np.repeat(blurred, block, axis=0), block, axis=1)[:height, :width]
            return keep * vector + share * spread.ravel()

        return smooth


class GradientScaling:
    """The per-pixel diagonal of P's scaling (LBFGS_GRADIENT_SCALING), from the gradients seen."""

    def __init__(self, shape: tuple[int, ...], exponent: float, memory: float) -> None:
        self.shape = shape
        self.exponent = exponent
        self.memory = memory
        self.mean_square: np.ndarray | None = None

    def root(self, gradient: np.ndarray) -> np.ndarray | None:
        """D^½ as a flat float32 vector after taking in `gradient` (None: no scaling)."""
        if self.exponent <= 0:
            return None
        square = np.square(gradient.reshape(self.shape)).sum(axis=-1, keepdims=True)
        if self.mean_square is None:
            self.mean_square = square
        else:
            self.mean_square = self.memory * self.mean_square + (1.0 - self.memory) * square
        # The small floor keeps pixels whose gradient vanished (held at a bound) finite.
        relative = self.mean_square / max(float(self.mean_square.mean()), 1e-30) + 1e-3
        root = (relative ** (-self.exponent / 4.0)).astype(np.float32, copy=False)
        root /= np.sqrt(np.mean(np.square(root)))  # D = root² has mean 1
        # One copy to full size (every channel of a pixel shares its factor).
        return np.broadcast_to(root, self.shape).reshape(-1)


class _History:
    """The last `size` (s, y) pairs in float32, for the two-loop recursion; `precondition` is
    P of the starting inverse Hessian γ·P (γ = sᵀy / yᵀPy of the newest pair)."""

    def __init__(
        self,
        size: int,
        precondition: Callable[[np.ndarray], np.ndarray] = lambda v: v,
        gamma_scale: float = 1.0,
    ) -> None:
        self.size = size
        self.precondition = precondition
        self.gamma_scale = gamma_scale
        self.s: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.rho: list[float] = []
        self.gamma = 1.0

    def clear(self) -> None:
        self.s.clear()
        self.y.clear()
        self.rho.clear()

    def push(self, s: np.ndarray, y: np.ndarray) -> bool:
        sy = float(np.dot(s, y))
        yy = float(np.dot(y, y))
        if sy <= 1e-10 * yy or sy <= 0.0:  # curvature condition fails: skip the pair
            return False
        if len(self.s) == self.size:
            self.s.pop(0)
            self.y.pop(0)
            self.rho.pop(0)
        self.s.append(s)
        self.y.append(y)
        self.rho.append(1.0 / sy)
        self.gamma = self.gamma_scale * sy / float(np.dot(y, self.precondition(y)))
        return True

    def direction(self, gradient: np.ndarray) -> np.ndarray:
        """−H·gradient, H the L-BFGS inverse-Hessian approximation (two-loop recursion)."""
        q = gradient.copy()
        alphas = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(self.rho), strict=True):
            alpha = rho * float(np.dot(s, q))
            q -= np.float32(alpha) * y
            alphas.append(alpha)
        q = np.float32(self.gamma) * self.precondition(q)
        for s, y, rho, alpha in zip(self.s, self.y, self.rho, reversed(alphas), strict=True):
            beta = rho * float(np.dot(y, q))
            q += np.float32(alpha - beta) * s
        q *= np.float32(-1.0)
        return q


def _scaled(
    smooth: Callable[[np.ndarray], np.ndarray], root: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """D^½·smooth·D^½ (symmetric positive definite as smooth is), D^½ = diag(root)."""
    return lambda vector: root * smooth(root * vector)


def _interpolate(f0: float, d0: float, t: float, ft: float, low: float, high: float) -> float:
    """Minimiser of the quadratic through f(0)=f0, f'(0)=d0, f(t)=ft, clamped to [low, high]·t."""
    curvature = ft - f0 - d0 * t
    if curvature <= 0:
        return low * t
    return min(high * t, max(low * t, -d0 * t * t / (2.0 * curvature)))


def run_lbfgs(
    evaluate: Evaluate,
    start: np.ndarray,
    steps: int,
    on_step: StepCallback | None = None,
    should_cancel: CancelCheck | None = None,
    settings: LbfgsSettings | None = None,
    target_loss: float | None = None,
) -> Best:
    """Minimise with a float32 L-BFGS over the box [0, 255] (projection), at most `steps` evaluations.

    Bounds are handled by projection: pixels at a bound whose gradient pushes outwards are held
    (their gradient is zeroed for the direction), and every trial point is clipped to the box.
    Each iteration tries the L-BFGS step first (the common case: one evaluation per iteration)
    and shrinks it by interpolation only if the loss does not fall enough. `target_loss` stops
    as soon as the loss reaches it.
    """
    settings = settings or LbfgsSettings()
    tracker = _Tracker(evaluate, steps, on_step, should_cancel)
    if steps <= 0:
        return _result(tracker, start)
    x = np.clip(start, PIXEL_MIN, PIXEL_MAX).astype(np.float32).ravel()
    shape = start.shape
    smooth = settings.preconditioner(shape)
    history = _History(settings.history, smooth, settings.gamma_scale)
    scaling = GradientScaling(shape, settings.gradient_scaling, settings.gradient_memory)

    def call(point: np.ndarray) -> tuple[float, np.ndarray]:
        parts, gradient = tracker(point.reshape(shape))
        return parts.total, gradient.astype(np.float32, copy=False).ravel()

    f, g = call(x)
    while tracker.done < steps and not (target_loss is not None and f <= target_loss):
        root = scaling.root(g)
        if root is not None:  # P = D^½·smooth·D^½ for this iteration (γ of its pair too)
            history.precondition = _scaled(smooth, root)
        held = ((x <= PIXEL_MIN) & (g > 0)) | ((x >= PIXEL_MAX) & (g < 0))
        free_g = np.where(held, np.float32(0.0), g)
        if history.s:
            d = history.direction(free_g)
            d[held] = 0.0
            t = min(1.0, settings.max_change / max(float(np.abs(d).max()), 1e-12))
        else:
            d = -free_g
            t = settings.first_step / max(float(np.abs(d).max()), 1e-12)
        slope = float(np.dot(free_g, d))
        if not slope < 0.0:  # not a descent direction (stale curvature): restart from −g
            history.clear()
            d = -free_g
            slope = float(np.dot(free_g, d))
            t = settings.first_step / max(float(np.abs(d).max()), 1e-12)
            if slope == 0.0:
                break  # a stationary point inside the box
        while True:
            trial = np.clip(x + np.float32(t) * d, PIXEL_MIN, PIXEL_MAX)
            f_new, g_new = call(trial)
            predicted = float(np.dot(g, trial - x))
            within_noise = f_new - f <= settings.noise * abs(f)
            if f_new <= f + settings.armijo * predicted or within_noise or tracker.done >= steps:
                break
            t = _interpolate(f, slope, t, f_new, 0.1 * settings.backtrack, settings.backtrack)
        if within_noise:
            history.push(trial - x, g_new - g)
            x, f, g = trial, f_new, g_new
    return _result(tracker, start)


def run_lbfgs_scipy(
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

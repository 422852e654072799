"""Every knob of a style-transfer run, with its default, in one frozen dataclass.

The command line (`engine.cli`) and the bot's settings derive their defaults and limits from
here; nothing else hard-codes a number that lives in this file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

# The objective of Gatys et al. as the reference recipe uses it.
CONTENT_LAYERS: tuple[str, ...] = ("block5_conv2",)
STYLE_LAYERS: tuple[str, ...] = (
    "block1_conv1",
    "block2_conv1",
    "block3_conv1",
    "block4_conv1",
    "block5_conv1",
)
REFERENCE_CONTENT_WEIGHT = 1e3
REFERENCE_STYLE_WEIGHT = 1e-2
REFERENCE_SIZE = 512

# "Strength" is what users see. It moves the style/content weight ratio on a log scale:
# every level multiplies the ratio by sqrt(10), so level 1 is a tenth of the reference
# ratio, level 5 ten times it, and the middle level is exactly the reference recipe.
MIN_STRENGTH = 1.0
MAX_STRENGTH = 5.0
REFERENCE_STRENGTH = 3.0
RATIO_FACTOR_PER_LEVEL = math.sqrt(10.0)

MIN_SIZE = 64
MAX_SIZE = 2048

# Brush size: the style picture is resized to `style_scale` times the working size before its
# Gram matrices are taken, so the same texture statistics describe bigger (X > 1) or finer
# (X < 1) strokes. Never under MIN_STYLE_SIDE px: VGG's deepest style layer needs 16 px.
MIN_STYLE_SCALE = 0.25
MAX_STYLE_SCALE = 4.0
MIN_STYLE_SIDE = 32

Optimizer = Literal["lbfgs", "adam"]
OutputFormat = Literal["jpeg", "png"]

# Steps per scale, coarsest first, measured on trained features (benchmarks/bench_engine.py;
# README, "Benchmarks"): 147 full-size L-BFGS steps from the photo reach the loss of the
# reference's 1000 Adam steps at 512 px with direct bfloat16 convolutions, 159 with the F(3×3)
# Winograd ones, each ~40 % cheaper (166 before the scaled start of L-BFGS and 195 before its
# smoothing start, see engine/optimize.py). The default 160 scored 59,478–60,005 by the
# reference scorer in four runs against the recipe's 60,120: 0.2–1.1 % under, a thin margin
# (165 would cost ~2.4 s, about the margin on the 30×). Coarse-to-fine
# scales did not pay on this objective: a coarse result's texture statistics do not carry over
# to the full size (an upsampled picture's Gram loss is high), and every coarse step cost more
# than it saved. So the default is one full-size scale; `steps=(40, 160)` and the like still
# run coarse-to-fine.
DEFAULT_LBFGS_STEPS: tuple[int, ...] = (160,)
# Smaller pictures need more steps to match the reference's loss at their size (measured: 147
# evaluations at 512 px and 200 at 256 px by the engine's own loss with direct convolutions,
# 215 at 256 px with the F(2×2) Winograd ones the engine uses below 512 px; steps there are 4x
# cheaper): below 512 px the final scale's default count scales as (512 / size) ** 0.5 (226 at
# 256 px). Above 512 px nothing was re-measured, so the counts stay
# what they have been: (512 / size) ** 0.45 from 160 is 117 at 1024 px as before (133 at
# 768 px, 140 before), and the floor of 100 from 1536 px on.
STEPS_SIZE_EXPONENT = 0.5
STEPS_SIZE_EXPONENT_LARGE = 0.45
MIN_DEFAULT_FINAL_STEPS = 100
MAX_DEFAULT_FINAL_STEPS = 600
# Adam is the reference recipe: 1000 steps at full size.
DEFAULT_ADAM_STEPS: tuple[int, ...] = (1000,)
# A warm start (same pair, another setting) runs only the final scale, with a fraction of
# its steps: the picture is already close to the new optimum, and coarse scales would only
# blur the detail it has.
WARM_START_STEP_FRACTION = 0.5
# A first look: a first painting (not a warm start) begins with a quick pass at QUICK_PASS_SIDE px
# (a step there costs about a tenth of a 512 px step), whose result is sent at once as the
# preview, long before the full-size scale is a quarter done (issue 11: the first picture within
# a tenth of the painting's time; measured ~5 s of ~160 s at 512 px). The full-size scale still
# starts from the photo: started from the quick pass's picture, upsampled, the final loss was
# lower for 2 of 4 pairs and higher for the other 2 (tubingen + starry_night +2.1 %;
# docs/ARCHITECTURE.md, "First look and large sizes"). Never larger than half the painting,
# and skipped under MIN_QUICK_PASS_SIDE px.
QUICK_PASS_SIDE = 192
QUICK_PASS_STEPS = 40
MIN_QUICK_PASS_SIDE = 32


class ParamsError(ValueError):
    """A parameter is outside what the engine accepts; the message names it."""


def style_weight_for_strength(
    strength: float, content_weight: float = REFERENCE_CONTENT_WEIGHT
) -> float:
    """The style weight that puts the style/content ratio at `strength` (content weight fixed)."""
    reference_ratio = REFERENCE_STYLE_WEIGHT / REFERENCE_CONTENT_WEIGHT
    ratio = reference_ratio * RATIO_FACTOR_PER_LEVEL ** (strength - REFERENCE_STRENGTH)
    return ratio * content_weight


@dataclass(frozen=True)
class StyleParams:
    """One style-transfer run. Every field has the product's default."""

    size: int = REFERENCE_SIZE
    """Long side of the result in pixels."""
    strength: float = REFERENCE_STRENGTH
    """1 (a hint of style) to 5 (style everywhere); 3 is the reference recipe's ratio."""
    content_weight: float = REFERENCE_CONTENT_WEIGHT
    style_weight: float | None = None
    """Explicit style weight; None derives it from `strength`."""
    tv_weight: float = 0.0
    """Total-variation weight (smoothness). The reference recipe has none."""
    optimizer: Optimizer = "lbfgs"
    scales: int = 3
    """At most this many coarse-to-fine levels (see `steps_per_scale`)."""
    steps: tuple[int, ...] | None = None
    """Optimizer steps per scale, coarsest first; None takes the optimizer's defaults."""
    learning_rate: float = 5.0
    """Adam only (the reference recipe's lr)."""
    target_loss: float | None = None
    """L-BFGS only: end the final scale as soon as its loss reaches this value (None: run
    every step). Losses are on the weighted objective, as `Result.losses["total"]` reports."""
    min_scale_side: int = 64
    coarse_content_boost: float = 3.0
    """Content weight multiplier on every scale but the last (the last is exact)."""
    content_layers: tuple[str, ...] = CONTENT_LAYERS
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_blend: tuple[float, ...] | None = None
    """Relative weights of several style images; None weighs them equally."""
    style_scale: float = 1.0
    """Brush size: the style picture's long side is this times the working size (0.25–4)."""
    preserve_colors: bool = False
    """Keep the content photo's colours: the style only changes luminance (YIQ transfer)."""
    seed: int = 0
    init: Literal["content", "noise"] = "content"
    output_format: OutputFormat = "jpeg"
    preview: bool = True
    """Send a small preview: after the quick pass (or a quarter of the way through a single
    scale without one), and after every coarse scale."""
    quick_pass_side: int = QUICK_PASS_SIDE
    """Long side of the quick pass whose picture is the first preview (see `quick_pass`)."""
    quick_pass_steps: int = QUICK_PASS_STEPS
    """Steps of the quick pass; 0 turns it off."""
    mixed_precision: bool | None = None
    """bfloat16 convolutions (about 1.8x faster where the CPU has native bfloat16, e.g.
    AVX512-BF16 or AMX; the losses track float32 within a fraction of a percent).
    None: on exactly when the device has it natively (a CPU with AVX512-BF16 or AMX, a GPU of
    compute capability 8.0+). Reported losses come from the same precision."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Free-form metadata carried along (never read by the engine)."""

    def __post_init__(self) -> None:
        self.validate()

    # -- derived values -------------------------------------------------------------------
    @property
    def effective_style_weight(self) -> float:
        if self.style_weight is not None:
            return self.style_weight
        return style_weight_for_strength(self.strength, self.content_weight)

    @property
    def steps_per_scale(self) -> tuple[int, ...]:
        """Steps of each scale that runs, coarsest first.

        As many scales run as there are numbers in `steps` (at most `scales`, the last
        numbers win): `steps=(200,)` is a single full-size scale whatever `scales` says.
        """
        steps = self.steps
        if steps is None and self.optimizer == "adam":
            steps = DEFAULT_ADAM_STEPS
        elif steps is None:
            exponent = (
                STEPS_SIZE_EXPONENT if self.size < REFERENCE_SIZE else STEPS_SIZE_EXPONENT_LARGE
            )
            final = DEFAULT_LBFGS_STEPS[-1] * (REFERENCE_SIZE / self.size) ** exponent
            final = min(MAX_DEFAULT_FINAL_STEPS, max(MIN_DEFAULT_FINAL_STEPS, round(final)))
            steps = (*DEFAULT_LBFGS_STEPS[:-1], final)
        return tuple(steps[-self.scales :])

    def scale_sizes(self) -> tuple[int, ...]:
        """Long side of each scale that runs, coarsest first; the last one is `size`.

        Each coarser scale halves the size; scales under `min_scale_side` are dropped.
        """
        sizes = [self.size]
        for _ in range(len(self.steps_per_scale) - 1):
            smaller = sizes[0] // 2
            if smaller < self.min_scale_side:
                break
            sizes.insert(0, smaller)
        return tuple(sizes)

    def warm_steps(self) -> int:
        """Steps of a warm start: a fraction of the final scale's."""
        return max(1, math.ceil(self.steps_per_scale[-1] * WARM_START_STEP_FRACTION))

    def quick_pass(self, *, warm_start: bool = False) -> tuple[int, int] | None:
        """(long side, steps) of the quick pass before the full-size scale, or None.

        It runs for a first painting with previews on, L-BFGS and a single full-size scale
        (coarse-to-fine runs send their coarse scales as previews; Adam is the reference
        recipe, kept as it is).
        """
        if (
            warm_start
            or not self.preview
            or self.quick_pass_steps == 0
            or self.optimizer != "lbfgs"
            or len(self.scale_sizes()) > 1
        ):
            return None
        side = min(self.quick_pass_side, self.size // 2)
        return (side, self.quick_pass_steps) if side >= MIN_QUICK_PASS_SIDE else None

    def planned_megapixel_steps(self, aspect: float = 0.75, *, warm_start: bool = False) -> float:
        """The optimisation's work for a picture of long side `size` and short side `aspect`
        times it: Σ over the passes that run (quick pass and scales) of steps × megapixels.
        The bot divides a worker's measured seconds by this (`Result.megapixel_steps`) to
        estimate other sizes.
        """
        if warm_start:
            plan = [(self.size, self.warm_steps())]
        else:
            sides = self.scale_sizes()
            plan = list(zip(sides, self.steps_per_scale[-len(sides) :], strict=True))
            quick = self.quick_pass()
            if quick is not None:
                plan.insert(0, quick)
        return sum(steps * side * side * aspect / 1e6 for side, steps in plan)

    def style_side(self, side: int) -> int:
        """Long side of the style picture whose Gram matrices a scale of long side `side`
        matches: `style_scale` times it, at least MIN_STYLE_SIDE."""
        return max(MIN_STYLE_SIDE, round(side * self.style_scale))

    @property
    def use_mixed_precision(self) -> bool:
        """`mixed_precision`, or when None the device's choice: on a GPU bfloat16 iff it has it
        (compute capability 8.0+), on the CPU iff its flags do. Never imports TensorFlow: where
        it is not loaded (the bot), the CPU decides (`engine.hardware.current_device`)."""
        if self.mixed_precision is not None:
            return self.mixed_precision
        from engine.hardware import default_mixed_precision

        return default_mixed_precision()

    # -- validation -----------------------------------------------------------------------
    def validate(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ParamsError(message)

        need(
            MIN_SIZE <= self.size <= MAX_SIZE,
            f"size must be {MIN_SIZE}–{MAX_SIZE} px, not {self.size}",
        )
        need(
            MIN_STRENGTH <= self.strength <= MAX_STRENGTH,
            f"strength must be {MIN_STRENGTH:g}–{MAX_STRENGTH:g}, not {self.strength:g}",
        )
        need(self.content_weight >= 0, "content weight must be ≥ 0")
        need(self.style_weight is None or self.style_weight >= 0, "style weight must be ≥ 0")
        need(self.tv_weight >= 0, "tv weight must be ≥ 0")
        need(
            self.optimizer in ("lbfgs", "adam"),
            f"optimizer must be lbfgs or adam, not {self.optimizer!r}",
        )
        need(1 <= self.scales <= 5, "scales must be 1–5")
        need(self.coarse_content_boost > 0, "coarse content boost must be > 0")
        need(
            self.steps is None or (len(self.steps) >= 1 and all(s >= 0 for s in self.steps)),
            "steps must be non-negative numbers",
        )
        need(self.learning_rate > 0, "learning rate must be > 0")
        need(
            self.target_loss is None or self.target_loss >= 0,
            "target loss must be ≥ 0",
        )
        need(
            32 <= self.min_scale_side <= self.size,
            "min scale side must be 32 px or more, up to size",
        )
        need(
            len(self.content_layers) >= 1 and len(self.style_layers) >= 1,
            "layers must not be empty",
        )
        need(
            self.style_blend is None
            or (all(w >= 0 for w in self.style_blend) and sum(self.style_blend) > 0),
            "style blend weights must be ≥ 0 with a positive sum",
        )
        need(
            MIN_STYLE_SCALE <= self.style_scale <= MAX_STYLE_SCALE,
            f"style scale must be {MIN_STYLE_SCALE:g}–{MAX_STYLE_SCALE:g}, "
            f"not {self.style_scale:g}",
        )
        need(
            MIN_QUICK_PASS_SIDE <= self.quick_pass_side <= MAX_SIZE,
            f"quick pass side must be {MIN_QUICK_PASS_SIDE}–{MAX_SIZE} px, "
            f"not {self.quick_pass_side}",
        )
        need(self.quick_pass_steps >= 0, "quick pass steps must be ≥ 0")
        need(self.init in ("content", "noise"), "init must be content or noise")
        need(self.output_format in ("jpeg", "png"), "output format must be jpeg or png")

    # -- conversions ----------------------------------------------------------------------
    def replace(self, **changes: Any) -> StyleParams:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values (tuples become lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StyleParams:
        """Inverse of `to_dict`; unknown keys are an error so typos do not pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ParamsError(f"unknown parameters: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("steps", "content_layers", "style_layers", "style_blend"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def reference(cls, **changes: Any) -> StyleParams:
        """The original recipe's objective exactly: cw 1e3, sw 1e-2, no TV, colours not kept."""
        base = cls(
            size=REFERENCE_SIZE,
            content_weight=REFERENCE_CONTENT_WEIGHT,
            style_weight=REFERENCE_STYLE_WEIGHT,
            tv_weight=0.0,
            preserve_colors=False,
        )
        return base.replace(**changes) if changes else base

"""The EntroPIC proportional-integral entropy controller (ALGORITHMS.md §2).

For window k with measured entropy H_k and target H_tar:

    e_k = H_k - H_tar                                   # > 0: too much entropy
    alpha_k = clip(K_p e_k + K_i I_k, alpha_min, alpha_max)
    I_{k+1} = I_k + w_k e_k                             # w_k: the window's share of an optimizer step

alpha > 0 up-weights positive-advantage tokens (entropy falls); alpha < 0 up-weights negative
ones (entropy rises). Pure Python, no tensors: every rank computes the same alpha from the
same all-reduced entropy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

SCHEDULE_KINDS = ("constant", "linear", "cosine", "relative")


@dataclass(frozen=True)
class TargetSchedule:
    """How the target entropy moves over optimizer steps.

    - ``constant``: ``end`` throughout.
    - ``linear`` / ``cosine``: from ``start`` to ``end`` over ``steps`` steps, then ``end``.
    - ``relative``: ``ratio`` times the first measured entropy.
    """

    kind: str = "constant"
    start: float | None = None
    end: float | None = None
    steps: int | None = None
    ratio: float | None = None

    @classmethod
    def from_dict(cls, fields: dict) -> TargetSchedule:
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"schedule.{unknown[0]}: unknown field; a schedule has kind, start, end, steps, ratio")
        return cls(**fields)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule.kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")
        required = {
            "constant": ("end",),
            "linear": ("start", "end", "steps"),
            "cosine": ("start", "end", "steps"),
            "relative": ("ratio",),
        }[self.kind]
        for name in ("start", "end", "steps", "ratio"):
            value = getattr(self, name)
            if name in required and value is None:
                raise ValueError(f"schedule.{name} is required for a {self.kind} schedule")
            if name not in required and value is not None:
                raise ValueError(f"schedule.{name} is not used by a {self.kind} schedule")
            if value is not None:
                _non_negative(f"schedule.{name}", value)
        if self.steps is not None and (int(self.steps) != self.steps or self.steps < 1):
            raise ValueError(f"schedule.steps must be a whole number >= 1, got {self.steps}")

    def target(self, step: float, first_entropy: float | None) -> float:
        """The target at ``step`` optimizer steps; ``first_entropy`` is the first measurement."""
        if self.kind == "constant":
            return self.end
        if self.kind == "relative":
            return self.ratio * first_entropy
        progress = min(step / self.steps, 1.0)
        if self.kind == "cosine":
            progress = 0.5 * (1.0 - math.cos(math.pi * progress))
        return self.start + (self.end - self.start) * progress


class PIController:
    """Holds the policy entropy at a target by choosing the EntroPIC coefficient alpha.

    Args:
        target_entropy: the constant target H_tar (nats); give this or ``schedule``.
        kp, ki: proportional and integral gains (>= 0). ``ki = 0`` is P control.
        alpha_min, alpha_max: bounds on alpha.
        anti_windup: skip integrating an error that would push a saturated alpha further out.
        schedule: a ``TargetSchedule`` (or a dict of its fields) instead of ``target_entropy``.

    ``update(entropy, weight)`` returns alpha for the window, then integrates. A non-finite
    entropy returns the previous alpha, integrates nothing and counts a skip (the target
    schedule still advances: the optimizer step happens).
    """

    def __init__(
        self,
        target_entropy: float | None = None,
        kp: float = 1.0,
        ki: float = 0.01,
        alpha_min: float = -1.0,
        alpha_max: float = 1.0,
        anti_windup: bool = True,
        schedule: TargetSchedule | dict | None = None,
    ) -> None:
        self.schedule, self.kp, self.ki, self.alpha_min, self.alpha_max = check_settings(
            target_entropy, kp, ki, alpha_min, alpha_max, schedule
        )
        self.anti_windup = bool(anti_windup)

        self.integral = 0.0  # I_k
        self.error = 0.0  # e of the last window
        self.alpha = min(max(0.0, self.alpha_min), self.alpha_max)  # alpha of the last window
        self.p_term = 0.0
        self.i_term = 0.0
        self.entropy = float("nan")  # last measured entropy
        self.window_target = float("nan")  # target of the last window
        self.saturated = False
        self.steps = 0.0  # optimizer steps so far (sum of window weights)
        self.skipped = 0  # windows skipped for a non-finite entropy
        self.first_entropy: float | None = None

    @property
    def target(self) -> float:
        """The target for the next window (nan for a relative schedule before any measurement)."""
        if self.schedule.kind == "relative" and self.first_entropy is None:
            return float("nan")
        return self.schedule.target(self.steps, self.first_entropy)

    def update(self, entropy: float, weight: float = 1.0) -> float:
        """Alpha for a window with this measured entropy; ``weight`` is its share of an optimizer step."""
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"weight must be a finite number > 0, got {weight}")
        entropy = float(entropy)
        if not math.isfinite(entropy):
            self.skipped += 1
            self.steps += weight  # the optimizer step still happens: the schedule moves on
            return self.alpha
        if self.first_entropy is None:
            self.first_entropy = entropy

        self.entropy = entropy
        self.window_target = self.target
        self.error = entropy - self.window_target
        self.p_term = self.kp * self.error
        self.i_term = self.ki * self.integral
        unclipped = self.p_term + self.i_term
        self.alpha = min(max(unclipped, self.alpha_min), self.alpha_max)
        self.saturated = unclipped != self.alpha

        # Anti-windup (conditional integration): while alpha is pinned at a bound, an error
        # that would drive the integral further past that bound is not accumulated, so the
        # integral cannot wind up and overshoot when the error changes sign.
        pushes_out = (unclipped > self.alpha_max and self.error > 0) or (unclipped < self.alpha_min and self.error < 0)
        if not (self.anti_windup and pushes_out):
            self.integral += weight * self.error
        self.steps += weight
        return self.alpha

    def metrics(self) -> dict[str, float]:
        """The controller metrics of ALGORITHMS.md §2 for the last window."""
        return {
            "entropy": self.entropy,
            "target": self.window_target,
            "error": self.error,
            "alpha": self.alpha,
            "p_term": self.p_term,
            "i_term": self.i_term,
            "integral": self.integral,
            "saturated": float(self.saturated),
            "skipped": float(self.skipped),
        }

    _STATE = (
        "integral",
        "error",
        "alpha",
        "p_term",
        "i_term",
        "entropy",
        "window_target",
        "saturated",
        "steps",
        "skipped",
        "first_entropy",
    )

    def state_dict(self) -> dict:
        """JSON-serialisable state: everything ``load_state_dict`` needs to continue exactly."""
        state = {name: getattr(self, name) for name in self._STATE}
        for name in ("entropy", "window_target"):  # JSON has no nan
            state[name] = None if math.isnan(state[name]) else state[name]
        state["schedule"] = asdict(self.schedule)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict``. The gains and bounds are this controller's own (they may have
        been changed for the resumed run); alpha is clipped to them."""
        missing = [name for name in (*self._STATE, "schedule") if name not in state]
        if missing:
            raise ValueError(f"controller state is missing {missing}")
        if TargetSchedule.from_dict(state["schedule"]) != self.schedule:
            raise ValueError(
                f"controller state was saved with schedule {state['schedule']}, "
                f"but this controller has {asdict(self.schedule)}"
            )
        for name in self._STATE:
            value = state[name]
            if name == "saturated":
                value = bool(value)
            elif name == "skipped":
                value = int(value)
            elif value is None and name in ("entropy", "window_target", "first_entropy"):
                value = float("nan") if name != "first_entropy" else None
            else:
                value = _number(f"state.{name}", value)
            setattr(self, name, value)
        self.alpha = min(max(self.alpha, self.alpha_min), self.alpha_max)


def check_settings(
    target_entropy: float | None,
    kp: float,
    ki: float,
    alpha_min: float,
    alpha_max: float,
    schedule: TargetSchedule | dict | None,
) -> tuple[TargetSchedule, float, float, float, float]:
    """The controller's settings checked, as ``(schedule, kp, ki, alpha_min, alpha_max)``; a
    ``ValueError`` names the parameter. A config that holds these settings checks them with this
    function, without building a controller."""
    if (target_entropy is None) == (schedule is None):
        raise ValueError("target_entropy: give exactly one of target_entropy and schedule")
    if schedule is None:
        schedule = TargetSchedule("constant", end=_non_negative("target_entropy", target_entropy))
    elif isinstance(schedule, dict):
        schedule = TargetSchedule.from_dict(schedule)
    alpha_min, alpha_max = _number("alpha_min", alpha_min), _number("alpha_max", alpha_max)
    if not alpha_min < alpha_max:
        raise ValueError(f"alpha_min must be < alpha_max, got alpha_min={alpha_min}, alpha_max={alpha_max}")
    return schedule, _non_negative("kp", kp), _non_negative("ki", ki), alpha_min, alpha_max


def _number(name: str, value) -> float:
    """``value`` as a finite float (Python, NumPy or 0-d torch numbers), else a ValueError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, (bool, str)) or not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _non_negative(name: str, value) -> float:
    number = _number(name, value)
    if number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number

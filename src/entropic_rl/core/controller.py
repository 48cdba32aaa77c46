"""The EntroPIC proportional-integral entropy controller (ALGORITHMS.md §2).

For window k with measured entropy H_k and target H_tar:

    e_k = H_k - H_tar                                   # > 0: too much entropy
    alpha_k = clip(K_p e_k + K_i I_k, alpha_min, alpha_max)
    I_{k+1} = I_k + w_k e_k                             # w_k: the window's share of an optimizer step

alpha > 0 up-weights positive-advantage tokens (entropy falls); alpha < 0 up-weights negative
ones (entropy rises). Pure Python, no tensors: every rank computes the same alpha from the
same all-reduced entropy.

With ``gains="auto"`` the controller tunes its own gain (sign-correlation adaptation,
docs/control.md), on the relative error e_k = (H_k - H_tar) / H_tar:

    s_k = 1/2 sgn(e_k) [sgn(e_{k-10}) + sgn(e_{k-20})]  # 0 when s_k > 0 and alpha reached its bound in
                                                        # the error's direction within the last 20
                                                        # windows, or when rewards are flat
    kappa_k = clip(kappa_{k-1} exp(0.06 s_k), 0.1, 1000),  kappa_0 = 3
    alpha_k = clip(kappa_k e_k + I_k, alpha_min, alpha_max)
    I_{k+1} = clip(I_k + w_k (kappa_k / 80) e_k, alpha_min, alpha_max)   # anti-windup as above

A loop too slow keeps the error's sign over 10-20 windows (kappa rises); one that oscillates flips
it (kappa falls). In relative terms kappa is K_p * H_tar: kappa 3 at target 0.3 is K_p 10, K_i 0.125.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

SCHEDULE_KINDS = ("constant", "linear", "cosine", "relative")
GAINS = ("fixed", "auto")
AUTHORS_GAINS = (1.0, 0.01)  # K_p, K_i of the authors' runs: the fixed gains where kp or ki is not given


@dataclass(frozen=True)
class AutoGains:
    """The constants of ``gains="auto"`` (one set for every plant; docs/control.md)."""

    kappa0: float = 3.0  # initial relative gain (K_p = kappa / H_tar)
    rate: float = 0.06  # log-gain change per window at full sign agreement
    lags: tuple[int, int] = (10, 20)  # windows back whose error signs are compared with the current one
    kappa_min: float = 0.1
    kappa_max: float = 1000.0
    integral_ratio: float = 80.0  # the integral gain is kappa / integral_ratio per window
    min_mixed: float = 0.05  # below this share of sequences with a non-zero advantage, kappa is frozen


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
        kp, ki: fixed proportional and integral gains (>= 0); ``ki = 0`` is P control. One not
            given is the authors' (K_p 1, K_i 0.01).
        alpha_min, alpha_max: bounds on alpha.
        anti_windup: skip integrating an error that would push a saturated alpha further out.
        schedule: a ``TargetSchedule`` (or a dict of its fields) instead of ``target_entropy``.
        gains: ``fixed`` (``kp``, ``ki``) or ``auto`` (the gain adapts; ``kp`` and ``ki`` must not
            be given).
        authority_window: windows alpha may stay pinned at a bound with the error pushing it out
            before ``no_authority`` is set (0: never).

    ``update(entropy, weight, mixed)`` returns alpha for the window, then integrates; ``mixed`` is
    the share of sequences with a non-zero advantage (None: unknown). A non-finite entropy returns
    the previous alpha, integrates nothing and counts a skip (the target schedule still advances:
    the optimizer step happens).
    """

    def __init__(
        self,
        target_entropy: float | None = None,
        kp: float | None = None,
        ki: float | None = None,
        alpha_min: float = -1.0,
        alpha_max: float = 1.0,
        anti_windup: bool = True,
        schedule: TargetSchedule | dict | None = None,
        gains: str = "fixed",
        authority_window: int = 20,
        auto: AutoGains = AutoGains(),
    ) -> None:
        self.schedule, self.gains, self.kp, self.ki, self.alpha_min, self.alpha_max = check_settings(
            target_entropy, kp, ki, alpha_min, alpha_max, schedule, gains, authority_window
        )
        self.anti_windup = bool(anti_windup)
        self.authority_window, self.auto = int(authority_window), auto
        self.kappa = auto.kappa0  # auto: the relative gain
        self.signs: list[float] = []  # auto: sgn(e) of the last max(lags) windows, oldest first
        self.bounds: list[float] = []  # auto: +1 / -1 where alpha was at alpha_max / alpha_min, else 0, same windows
        self.adapt = 0.0  # auto: s_k of the last window
        self.pinned = 0  # windows in a row with alpha pinned and the error pushing it out

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

    def update(self, entropy: float, weight: float = 1.0, mixed: float | None = None) -> float:
        """Alpha for a window with this measured entropy; ``weight`` is its share of an optimizer
        step, ``mixed`` the share of its sequences with a non-zero advantage (None: unknown)."""
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
        if self.gains == "auto":
            relative = self.error / self.window_target
            self._adapt_gain(relative, weight, mixed)
            self.p_term = self.kappa * relative
            self.i_term = self.integral  # the auto integral is in units of alpha
        else:
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
            if self.gains == "auto":
                grown = self.integral + weight * self.kappa / self.auto.integral_ratio * relative
                self.integral = min(max(grown, self.alpha_min), self.alpha_max)
            else:
                self.integral += weight * self.error
        self.pinned = self.pinned + 1 if pushes_out else 0
        if self.gains == "auto":
            bound = 1.0 if self.alpha >= self.alpha_max else -1.0 if self.alpha <= self.alpha_min else 0.0
            self.bounds = [*self.bounds, bound][-max(self.auto.lags) :]
        self.steps += weight
        return self.alpha

    def _adapt_gain(self, relative: float, weight: float, mixed: float | None) -> None:
        """kappa from the agreement of the error's sign with its signs ``lags`` windows back."""
        a = self.auto
        sign = math.copysign(1.0, relative) if relative != 0 else 0.0
        history = self.signs
        s = 0.0
        if len(history) >= max(a.lags):
            s = 0.5 * sign * sum(history[-lag] for lag in a.lags)
        # alpha reached its bound in the error's direction within the span the signs compare: the
        # loop is not too slow for want of gain (a larger one cannot move alpha past the bound),
        # and a persisting error is the integral's to remove, so the gain must not grow
        reached = sign != 0 and sign in self.bounds
        if (s > 0 and reached) or (mixed is not None and mixed < a.min_mixed):
            s = 0.0
        self.adapt = s
        self.kappa = min(max(self.kappa * math.exp(a.rate * s * weight), a.kappa_min), a.kappa_max)
        self.signs = [*history, sign][-max(a.lags) :]

    @property
    def no_authority(self) -> bool:
        """Alpha has stayed pinned at a bound, with the error pushing it out, for ``authority_window`` windows."""
        return 0 < self.authority_window <= self.pinned

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
            "pinned": float(self.pinned),
            **({"kappa": self.kappa, "adapt": self.adapt} if self.gains == "auto" else {}),
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
    _AUTO_STATE = ("kappa", "signs", "bounds", "adapt")  # auto gains only (bounds optional when loading)

    def state_dict(self) -> dict:
        """JSON-serialisable state: everything ``load_state_dict`` needs to continue exactly."""
        state = {name: getattr(self, name) for name in self._STATE}
        for name in ("entropy", "window_target"):  # JSON has no nan
            state[name] = None if math.isnan(state[name]) else state[name]
        state["schedule"] = asdict(self.schedule)
        state["pinned"] = self.pinned
        state["gains"] = self.gains
        if self.gains == "auto":
            state.update({name: getattr(self, name) for name in self._AUTO_STATE})
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
        saved = state.get("gains", "fixed")  # states written before auto gains are fixed
        if saved != self.gains:
            raise ValueError(f"controller state was saved with gains {saved!r}, but this controller has {self.gains!r}")
        if self.gains == "auto":
            missing = [name for name in self._AUTO_STATE if name not in state and name != "bounds"]
            if missing:
                raise ValueError(f"controller state is missing {missing}")
            self.kappa, self.adapt = _number("state.kappa", state["kappa"]), _number("state.adapt", state["adapt"])
            self.signs = [_number("state.signs", sign) for sign in state["signs"]]
            # states saved before the bounds were kept: the span after a bound starts afresh
            self.bounds = [_number("state.bounds", bound) for bound in state.get("bounds", [])]
        self.pinned = int(state.get("pinned", 0))
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


def resolve_gains(gains: str, kp: float | None, ki: float | None) -> tuple[str, float | None, float | None]:
    """``(gains, kp, ki)`` with what was left unset filled in: fixed gains not given are the
    authors' (K_p 1, K_i 0.01); auto takes neither."""
    if gains not in GAINS:
        raise ValueError(f"gains must be one of {GAINS}, got {gains!r}")
    if gains == "auto":
        if kp is not None or ki is not None:
            raise ValueError(f"{'kp' if kp is not None else 'ki'}: fixed gains are not used with gains auto")
        return gains, None, None
    return gains, AUTHORS_GAINS[0] if kp is None else kp, AUTHORS_GAINS[1] if ki is None else ki


def check_settings(
    target_entropy: float | None,
    kp: float | None,
    ki: float | None,
    alpha_min: float,
    alpha_max: float,
    schedule: TargetSchedule | dict | None,
    gains: str = "fixed",
    authority_window: int = 20,
) -> tuple[TargetSchedule, str, float | None, float | None, float, float]:
    """The controller's settings checked and resolved (``resolve_gains``), as ``(schedule, gains,
    kp, ki, alpha_min, alpha_max)``; a ``ValueError`` names the parameter. A config that holds these
    settings checks them with this function, without building a controller."""
    gains, kp, ki = resolve_gains(gains, kp, ki)
    if isinstance(authority_window, bool) or not isinstance(authority_window, int) or authority_window < 0:
        raise ValueError(f"authority_window must be a whole number >= 0, got {authority_window!r}")
    if (target_entropy is None) == (schedule is None):
        raise ValueError("target_entropy: give exactly one of target_entropy and schedule")
    if schedule is None:
        schedule = TargetSchedule("constant", end=_non_negative("target_entropy", target_entropy))
    elif isinstance(schedule, dict):
        schedule = TargetSchedule.from_dict(schedule)
    if gains == "auto" and (schedule.kind, schedule.end) == ("constant", 0.0):
        raise ValueError("target_entropy: gains auto works on the relative error and needs a target > 0")
    if gains == "auto" and schedule.kind in ("linear", "cosine") and min(schedule.start, schedule.end) == 0:
        raise ValueError("schedule: gains auto works on the relative error and needs targets > 0")
    if gains == "auto" and schedule.kind == "relative" and schedule.ratio == 0:
        raise ValueError("schedule.ratio: gains auto works on the relative error and needs a target > 0")
    alpha_min, alpha_max = _number("alpha_min", alpha_min), _number("alpha_max", alpha_max)
    if not alpha_min < alpha_max:
        raise ValueError(f"alpha_min must be < alpha_max, got alpha_min={alpha_min}, alpha_max={alpha_max}")
    if gains == "auto":
        return schedule, gains, None, None, alpha_min, alpha_max
    return schedule, gains, _non_negative("kp", kp), _non_negative("ki", ki), alpha_min, alpha_max


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

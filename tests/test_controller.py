import dataclasses
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from entropic_rl import PIController, TargetSchedule
from entropic_rl.methods import EntroPIC, EntroPICConfig, LossSettings, Window


def test_hand_computed_sequence():
    c = PIController(target_entropy=1.0, kp=1.0, ki=0.5)
    # k=0: e=.5, I=0   -> alpha = .5,             I <- .5
    # k=1: e=.2        -> alpha = .2 + .5*.5 = .45, I <- .7
    # k=2: e=-.2       -> alpha = -.2 + .5*.7 = .15, I <- .5
    assert c.update(1.5) == pytest.approx(0.5)
    assert c.update(1.2) == pytest.approx(0.45)
    assert c.update(0.8) == pytest.approx(0.15)
    assert c.integral == pytest.approx(0.5)
    m = c.metrics()
    assert m["error"] == pytest.approx(-0.2) and m["target"] == 1.0 and m["entropy"] == 0.8
    assert m["p_term"] == pytest.approx(-0.2) and m["i_term"] == pytest.approx(0.35)


def test_sign_below_target_gives_negative_alpha():
    assert PIController(target_entropy=0.5).update(0.1) < 0
    assert PIController(target_entropy=0.5).update(0.9) > 0


def test_weights_integrate_one_error_per_optimizer_step():
    whole, halves = PIController(1.0, ki=0.1), PIController(1.0, ki=0.1)
    whole.update(1.4, weight=1.0)
    halves.update(1.4, weight=0.5)
    halves.update(1.4, weight=0.5)
    assert halves.integral == pytest.approx(whole.integral)
    assert halves.steps == pytest.approx(1.0)


def test_p_control_has_no_memory():
    c = PIController(1.0, kp=2.0, ki=0.0)
    c.update(3.0)
    assert c.update(1.25) == pytest.approx(0.5)


def test_non_finite_entropy_is_skipped_and_counted():
    c = PIController(1.0, ki=0.1)
    alpha = c.update(1.3)
    state = c.state_dict()
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert c.update(bad) == alpha
    assert c.skipped == 3
    assert c.integral == state["integral"]
    assert c.metrics()["skipped"] == 3.0


def test_skipped_windows_still_advance_the_schedule():
    c = PIController(schedule={"kind": "linear", "start": 1.0, "end": 0.0, "steps": 4})
    for entropy in (0.5, float("nan"), float("nan"), 0.5):
        c.update(entropy)
    assert c.metrics()["target"] == pytest.approx(0.25)  # the 4th optimizer step's target


def test_saturation_and_anti_windup_on_a_long_excursion():
    # 50 windows far above target pin alpha at 1; then entropy drops below target.
    with_aw, without = PIController(0.1, kp=1.0, ki=0.05), PIController(0.1, kp=1.0, ki=0.05, anti_windup=False)
    for c in (with_aw, without):
        for _ in range(50):
            c.update(3.0)
        assert c.alpha == 1.0 and c.metrics()["saturated"] == 1.0
    assert with_aw.integral == pytest.approx(0.0)  # kp * e = 2.9 > 1 from the start: nothing integrated
    assert without.integral == pytest.approx(50 * 2.9)
    assert with_aw.update(0.05) < 0  # recovers at once
    assert without.update(0.05) == 1.0  # wound-up integral keeps alpha pinned: overshoot


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_anti_windup_releases_an_error_that_pulls_a_saturated_alpha_back(sign):
    # The integral alone holds alpha at a bound (I 5 sign, K_i 1): an error towards the bound is not
    # integrated (the integral would wind up further), one away from it is, although alpha stays at the bound.
    c = PIController(1.0, kp=0.1, ki=1.0)
    c.integral = 5.0 * sign
    assert c.update(1.0 + 0.1 * sign) == sign and c.integral == 5.0 * sign and c.pinned == 1  # held
    assert c.update(1.0 - 0.1 * sign) == sign and c.saturated  # p -0.01 sign + i 5 sign: still at the bound
    assert c.integral == pytest.approx(4.9 * sign) and c.pinned == 0  # released: the error was integrated


def test_bounds_are_respected():
    c = PIController(0.0, kp=100.0, alpha_min=-0.3, alpha_max=0.2)
    assert c.update(5.0) == 0.2
    c = PIController(10.0, kp=100.0, alpha_min=-0.3, alpha_max=0.2)
    assert c.update(0.0) == -0.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_entropy": -0.1}, "target_entropy"),
        ({"target_entropy": 0.1, "kp": -1.0}, "kp"),
        ({"target_entropy": 0.1, "ki": -0.01}, "ki"),
        ({"target_entropy": 0.1, "alpha_min": 1.0, "alpha_max": -1.0}, "alpha_min"),
        ({"target_entropy": 0.1, "alpha_max": float("inf")}, "alpha_max"),
        ({}, "exactly one"),
        ({"target_entropy": 0.1, "schedule": {"kind": "relative", "ratio": 0.5}}, "exactly one"),
        ({"schedule": {"kind": "linear", "start": 1.0, "end": 0.1}}, "schedule.steps"),
        ({"schedule": {"kind": "sigmoid"}}, "schedule.kind"),
        ({"schedule": {"kind": "relative", "ratio": 0.5, "end": 0.2}}, "schedule.end"),
        ({"schedule": {"kind": "cosine", "start": 1.0, "end": 0.1, "steps": 2.5}}, "schedule.steps"),
    ],
)
def test_bad_parameters_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PIController(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": {"kind": "linear", "start": 1.0, "end": 0.1, "step": 10}}, "schedule.step: unknown field"),
        ({"schedule": {"kind": "constant", "end": "0.1"}}, "schedule.end must be a finite number"),
        ({"target_entropy": "0.1"}, "target_entropy must be a finite number"),
        ({"target_entropy": 0.1, "kp": True}, "kp must be a finite number"),
    ],
)
def test_wrong_types_and_typos_are_value_errors_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PIController(**kwargs)


def test_numpy_and_torch_numbers_are_accepted():
    import numpy as np
    import torch

    c = PIController(np.float32(0.5), kp=torch.tensor(2.0), ki=np.float64(0.1))
    assert c.update(torch.tensor(1.0)) == pytest.approx(1.0)


def test_load_state_dict_clips_alpha_to_this_controllers_bounds():
    wide = PIController(0.0, kp=10.0)
    wide.update(1.0)
    narrow = PIController(0.0, kp=10.0, alpha_min=-0.1, alpha_max=0.1)
    narrow.load_state_dict(wide.state_dict())
    assert narrow.alpha == 0.1


def test_bad_weight_is_rejected():
    with pytest.raises(ValueError, match="weight"):
        PIController(0.1).update(0.2, weight=0.0)


def test_schedules():
    linear = TargetSchedule("linear", start=1.0, end=0.2, steps=4)
    assert [linear.target(s, None) for s in (0, 1, 2, 4, 10)] == pytest.approx([1.0, 0.8, 0.6, 0.2, 0.2])
    cosine = TargetSchedule("cosine", start=1.0, end=0.2, steps=4)
    assert cosine.target(0, None) == 1.0 and cosine.target(4, None) == pytest.approx(0.2)
    assert cosine.target(2, None) == pytest.approx(0.6)
    assert cosine.target(1, None) > linear.target(1, None)  # cosine starts slowly

    relative = PIController(schedule={"kind": "relative", "ratio": 0.5})
    assert math.isnan(relative.target)
    relative.update(0.8)
    assert relative.metrics()["target"] == pytest.approx(0.4)
    relative.update(0.1)
    assert relative.metrics()["target"] == pytest.approx(0.4)  # the first measurement, not the latest


def test_schedule_advances_once_per_optimizer_step():
    c = PIController(schedule=TargetSchedule("linear", start=1.0, end=0.0, steps=10))
    for _ in range(4):
        c.update(0.5, weight=0.25)  # one optimizer step in four windows
    assert c.target == pytest.approx(0.9)


def test_state_dict_mismatched_schedule_is_rejected():
    state = PIController(0.1).state_dict()
    with pytest.raises(ValueError, match="schedule"):
        PIController(0.2).load_state_dict(state)
    with pytest.raises(ValueError, match="missing"):
        PIController(0.1).load_state_dict({"integral": 0.0})


entropies = st.lists(st.one_of(st.floats(0.0, 5.0), st.just(float("nan"))), min_size=1, max_size=60)
gains = st.floats(0.0, 20.0)
schedules = st.sampled_from(
    [
        None,
        {"kind": "linear", "start": 2.0, "end": 0.3, "steps": 20},
        {"kind": "cosine", "start": 0.1, "end": 1.0, "steps": 7},
        {"kind": "relative", "ratio": 0.6},
    ]
)


def make(kp, ki, schedule, anti_windup=True, bounds=(-1.0, 1.0)):
    target = 0.5 if schedule is None else None
    return PIController(
        target, kp=kp, ki=ki, schedule=schedule, anti_windup=anti_windup, alpha_min=bounds[0], alpha_max=bounds[1]
    )


@settings(max_examples=100, deadline=None)
@given(hs=entropies, kp=gains, ki=gains, schedule=schedules, lo=st.floats(-2.0, 0.0), width=st.floats(0.01, 3.0))
def test_property_alpha_within_bounds(hs, kp, ki, schedule, lo, width):
    c = make(kp, ki, schedule, bounds=(lo, lo + width))
    for h in hs:
        assert lo <= c.update(h) <= lo + width


@settings(max_examples=100, deadline=None)
@given(hs=entropies, kp=st.floats(0.01, 20.0), ki_share=st.floats(0.0, 1.0), schedule=schedules)
def test_property_anti_windup_keeps_the_integral_term_within_the_bounds(hs, kp, ki_share, schedule):
    # An error is integrated only while Kp e + Ki I is inside the bounds (or pulling back), so with
    # Ki <= Kp the I-term itself can never wind up past a bound, however long alpha saturates.
    c = make(kp, kp * ki_share, schedule)
    for h in hs:
        c.update(h)
        assert c.alpha_min - 1e-9 <= c.ki * c.integral <= c.alpha_max + 1e-9


def test_without_anti_windup_the_integral_term_winds_up_past_the_bound():
    c = PIController(0.1, kp=1.0, ki=0.5, anti_windup=False)
    for _ in range(10):
        c.update(3.0)
    assert c.ki * c.integral > 10 * c.alpha_max


@settings(max_examples=100, deadline=None)
@given(hs=entropies, split=st.integers(0, 60), kp=gains, ki=gains, schedule=schedules, anti_windup=st.booleans())
def test_property_state_round_trip_continues_exactly(hs, split, kp, ki, schedule, anti_windup):
    split = min(split, len(hs))
    straight = make(kp, ki, schedule, anti_windup)
    first = make(kp, ki, schedule, anti_windup)
    for h in hs[:split]:
        straight.update(h)
        first.update(h)
    resumed = make(kp, ki, schedule, anti_windup)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    for h in hs[split:]:
        assert resumed.update(h) == straight.update(h)
    assert resumed.state_dict() == straight.state_dict()


@settings(max_examples=60, deadline=None)
@given(
    start=st.floats(0.0, 3.0),
    end=st.floats(0.0, 3.0),
    steps=st.integers(1, 500),
    step=st.floats(0.0, 1000.0),
    kind=st.sampled_from(["linear", "cosine"]),
)
def test_property_schedule_moves_monotonically_between_start_and_end(start, end, steps, step, kind):
    s = TargetSchedule(kind, start=start, end=end, steps=steps)
    value, later = s.target(step, None), s.target(step + 1.0, None)
    assert min(start, end) - 1e-9 <= value <= max(start, end) + 1e-9
    assert (later - value) * (end - start) >= -1e-12
    if step >= steps:
        assert value == pytest.approx(end)


def test_entropic_method_skips_an_empty_window_and_integrates_each_step_a_window_serves():
    method = EntroPIC(EntroPICConfig(target_entropy=0.2, kp=2.0, ki=0.5), LossSettings())
    method.update(Window(entropy_sum=0.0, token_count=0.0))  # no tokens: skipped, not entropy 0
    metrics = method.metrics()
    assert (metrics["entropic/alpha"], metrics["entropic/skipped"], metrics["entropic/integral"]) == (0.0, 1, 0.0)
    method.update(Window(entropy_sum=2.5, token_count=5.0, optimizer_steps=3))  # entropy 0.5
    assert method.step_state() == {"alpha": pytest.approx(2 * 0.3)}
    assert method.metrics()["entropic/integral"] == pytest.approx(3 * 0.3)
    assert method.controller.steps == 4  # the skipped step counts: the schedule moves on


# ---- the second actuator: the threshold moved while alpha is pinned (split-range control) ----


def split_range(**kwargs):
    config = EntroPICConfig(
        target_entropy=1.0, kp=10.0, ki=0.0, second_actuator="threshold", threshold_floor=0.55, threshold_windows=4
    )
    return EntroPIC(dataclasses.replace(config, **kwargs), LossSettings())


def window(entropy):
    return Window(entropy_sum=entropy, token_count=1.0)


def test_the_threshold_moves_to_its_floor_while_alpha_is_pinned_and_back_when_it_is_not():
    method = split_range()  # (0.95 - 0.55) / 4 windows: 0.1 a window
    thresholds = []
    # far below the target: pinned at -1 (down to the floor); far above: pinned at +1 (stays there);
    # just above: alpha 0.5, inside its bounds (back up to the setting)
    for entropy in [0.5] * 5 + [1.2] + [1.05] * 5:
        method.update(window(entropy))
        thresholds.append(method.threshold)
    assert thresholds == pytest.approx([0.85, 0.75, 0.65, 0.55, 0.55, 0.55, 0.65, 0.75, 0.85, 0.95, 0.95])
    assert method.metrics()["entropic/threshold"] == pytest.approx(0.95)

    held = split_range(ki=1.0)
    for _ in range(2):
        held.update(window(0.5))  # pinned: 0.85, 0.75
    held.controller.integral = 5.0  # the integral alone holds alpha at +1 ...
    held.update(window(0.95))  # ... while the error (-0.05) pulls it back: the threshold holds
    assert held.alpha == 1.0 and held.threshold == pytest.approx(0.75)


def test_the_moved_threshold_decides_which_tokens_are_confident_here_and_in_the_plug_ins():
    method = split_range()
    log_prob, advantages, mask = torch.log(torch.tensor([[0.7, 0.99]])), torch.ones(1, 2), torch.ones(1, 2)
    assert method.advantage_weights(log_prob, advantages, mask)[1]["entropic/confident_frac"] == 0.5  # 0.99 only
    for _ in range(3):
        method.update(window(0.5))  # pinned: 0.95 -> 0.65
    worker = split_range()  # a plug-in's worker gets alpha and the threshold in the step state
    worker.load_step_state(json.loads(json.dumps(method.step_state())))
    weights, metrics = worker.advantage_weights(log_prob, advantages, mask)
    assert metrics["entropic/confident_frac"] == 1.0 and weights.tolist() == [[0.0, 0.0]]  # alpha -1 on both
    resumed = split_range()
    resumed.load_state_dict(json.loads(json.dumps(method.state_dict())))
    assert resumed.threshold == method.threshold == pytest.approx(0.65)


def test_the_floor_is_checked_only_where_the_threshold_moves():
    assert EntroPICConfig(threshold=0.3).threshold_floor == 0.5  # unused without the second actuator
    with pytest.raises(ValueError, match=r"threshold_floor must be in \[0, threshold \(0.3\)\], got 0.5"):
        EntroPICConfig(threshold=0.3, second_actuator="threshold")


def test_without_saturation_the_second_actuator_changes_nothing():
    plain, split = EntroPIC(EntroPICConfig(target_entropy=1.0, kp=1.0), LossSettings()), split_range(kp=1.0, ki=0.01)
    plain_metrics = []
    for entropy in (0.6, 0.9, 1.3, 1.1, 0.95):  # alpha within (-1, 1) throughout
        plain.update(window(entropy))
        split.update(window(entropy))
        plain_metrics.append(plain.metrics())
        assert split.threshold == 0.95 and split.metrics() == plain_metrics[-1] | {"entropic/threshold": 0.95}
    assert plain.step_state() == {"alpha": split.alpha}


# ---- gains="auto": the sign-correlation gain adaptation (docs/control.md) ----


def auto(target=1.0, **kwargs):
    return PIController(target_entropy=target, gains="auto", **kwargs)


def test_auto_hand_computed_first_windows():
    c = auto()
    # relative error e = (H - 1) / 1; kappa_0 = 3, no adaptation before 20 windows of history
    # k=0: e=.1  -> alpha = 3*.1 + 0 = .3,             I <- 3/80*.1 = .00375
    # k=1: e=.2  -> alpha = 3*.2 + .00375 = .60375,    I <- .00375 + 3/80*.2 = .01125
    # k=2: e=-.1 -> alpha = -.3 + .01125 = -.28875,    I <- .01125 - .00375 = .0075
    assert c.update(1.1) == pytest.approx(0.3)
    assert c.update(1.2) == pytest.approx(0.60375)
    assert c.update(0.9) == pytest.approx(-0.28875)
    assert c.integral == pytest.approx(0.0075) and c.kappa == 3.0
    m = c.metrics()
    assert m["kappa"] == 3.0 and m["adapt"] == 0.0
    assert m["p_term"] == pytest.approx(-0.3) and m["i_term"] == pytest.approx(0.01125)


def test_auto_relative_error_scales_with_the_target():
    """kappa is K_p times the target: at target 0.3, kappa 3 acts as K_p 10."""
    assert auto(target=0.3).update(0.33) == pytest.approx(10 * 0.03)


def test_auto_gain_rises_for_a_persistent_error():
    c = auto()
    for _ in range(20):
        c.update(1.1)
    assert c.kappa == 3.0  # s = 0 until e_{k-20} exists
    for n in range(1, 6):
        c.update(1.1)  # the sign agrees with both lags: s = 1
        assert c.adapt == 1.0
        assert c.kappa == pytest.approx(3.0 * math.exp(0.06 * n))


def test_auto_gain_and_integral_scale_with_the_windows_weight():
    c = auto()
    for _ in range(20):
        c.update(1.1)  # kappa 3; the integral grows by 3 / 80 * 0.1 a window
    integral = c.integral
    assert integral == pytest.approx(20 * 3 / 80 * 0.1)
    c.update(1.1, weight=0.5)  # half an optimizer step: half the gain's step and half the integral's
    assert c.kappa == pytest.approx(3.0 * math.exp(0.06 * 0.5))
    assert c.integral == pytest.approx(integral + 0.5 * c.kappa / 80 * 0.1)
    assert c.steps == 20.5


def test_auto_gains_follow_a_target_schedule_in_relative_error():
    # The target falls 1.0 -> 0.5 over 5 optimizer steps; a constant entropy 1.1 is a relative error
    # of 0.1 at step 0 and 1.2 at step 5: alpha is kappa times it plus the integral of the steps before.
    c = auto(target=None, schedule={"kind": "linear", "start": 1.0, "end": 0.5, "steps": 5})
    assert c.update(1.1) == pytest.approx(3 * 0.1)
    relatives = [0.1]
    for step in range(1, 6):
        relative = (1.1 - (1.0 - 0.1 * step)) / (1.0 - 0.1 * step)
        alpha = c.update(1.1)
        assert c.metrics()["target"] == pytest.approx(1.0 - 0.1 * step)
        assert alpha == pytest.approx(min(3 * relative + sum(3 / 80 * r for r in relatives), 1.0))
        relatives.append(relative)


def square_wave(half_period: int, windows: int) -> list[float]:
    return [1.0 if (k // half_period) % 2 == 0 else -1.0 for k in range(windows)]


def test_auto_gain_falls_for_an_oscillating_error():
    """An error whose sign flips every 7 windows disagrees with its sign 10 and 20 windows back more
    often than it agrees: kappa falls, by exactly exp(0.06 * sum of s)."""
    signs = square_wave(7, 60)
    c = auto()
    for sign in signs:
        c.update(1.0 + 0.05 * sign)
    s = [0.5 * signs[k] * (signs[k - 10] + signs[k - 20]) for k in range(20, len(signs))]
    assert sum(s) < 0
    assert c.kappa == pytest.approx(3.0 * math.exp(0.06 * sum(s)))
    assert c.kappa < 3.0


def test_auto_gain_frozen_while_alpha_is_pinned_in_the_errors_direction():
    c = auto(authority_window=20)
    for _ in range(60):
        c.update(2.0)  # e = 1: alpha = 3 + I, pinned at 1, and the error pushes it further out
    assert c.alpha == 1.0 and c.kappa == 3.0  # a larger gain could not help
    assert c.integral == 0.0  # anti-windup: nothing integrated either
    assert c.pinned == 60 and c.no_authority


def test_auto_gain_frozen_for_20_windows_after_alpha_reached_its_bound():
    """A persistent error with alpha at its bound within the last 20 windows: the loop is not slow
    for want of gain, so kappa does not grow (even once alpha has left the bound)."""
    c = auto()
    for _ in range(25):
        c.update(1.1)  # windows 20-24 grow kappa
    grown = 3.0 * math.exp(0.06 * 6)
    c.update(2.0)  # window 25: grows (alpha was free before it), then alpha = kappa + I is pinned at +1
    assert c.kappa == pytest.approx(grown) and c.alpha == 1.0
    for _ in range(20):  # windows 26-45: alpha free again (about 0.5), but it was at +1 within 20 windows
        c.update(1.1)
        assert c.adapt == 0.0 and c.alpha < 1.0
    assert c.kappa == pytest.approx(grown)
    c.update(1.1)  # window 46: the bound has left the span
    assert c.adapt == 1.0 and c.kappa == pytest.approx(grown * math.exp(0.06))


def test_auto_gain_frozen_without_reward_variance():
    c = auto()
    for _ in range(40):
        c.update(1.1, mixed=0.0)  # every group's rewards equal: alpha cannot act
    assert c.kappa == 3.0 and c.adapt == 0.0
    assert c.integral > 0  # the integral still works
    c.update(1.1, mixed=0.5)
    assert c.kappa == pytest.approx(3.0 * math.exp(0.06))


def test_auto_gain_bounds():
    c = auto(alpha_min=-100.0, alpha_max=100.0)
    for _ in range(3000):
        c.update(1.001)
    assert c.kappa == 1000.0 and abs(c.integral) <= 100.0


def test_auto_state_dict_resumes_exactly():
    entropies = [1.0 + 0.1 * math.sin(k / 3) + 0.02 * (k % 5) for k in range(80)]
    whole = auto()
    alphas = [whole.update(h, mixed=0.5) for h in entropies]
    first = auto()
    for h in entropies[:45]:
        first.update(h, mixed=0.5)
    resumed = auto()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert [resumed.update(h, mixed=0.5) for h in entropies[45:]] == alphas[45:]
    assert resumed.kappa == whole.kappa and resumed.state_dict() == whole.state_dict()


def test_fixed_and_auto_states_do_not_mix():
    with pytest.raises(ValueError, match="saved with gains 'fixed'"):
        auto().load_state_dict(PIController(target_entropy=1.0).state_dict())
    state = PIController(target_entropy=1.0).state_dict()
    for name in ("gains", "pinned"):  # written before auto gains: a fixed-gain state
        del state[name]
    PIController(target_entropy=1.0).load_state_dict(state)


def test_gains_are_fixed_unless_auto_is_asked_for_and_a_missing_one_is_the_authors():
    for kwargs, gains in (
        ({}, ("fixed", 1.0, 0.01)),
        ({"kp": 10.0}, ("fixed", 10.0, 0.01)),
        ({"ki": 0.0}, ("fixed", 1.0, 0.0)),
        ({"gains": "auto"}, ("auto", None, None)),
    ):
        c = PIController(1.0, **kwargs)
        assert (c.gains, c.kp, c.ki) == gains
    with pytest.raises(ValueError, match="kp: fixed gains are not used with gains auto"):
        PIController(1.0, kp=10.0, gains="auto")
    with pytest.raises(ValueError, match="ki: fixed gains are not used with gains auto"):
        PIController(1.0, ki=0.1, gains="auto")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gains": "adaptive"}, "gains must be one of"),
        ({"gains": "auto", "target_entropy": 0.0}, "needs a target > 0"),
        ({"authority_window": -1}, "authority_window must be a whole number"),
        ({"authority_window": 2.5}, "authority_window must be a whole number"),
    ],
)
def test_auto_and_authority_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PIController(**{"target_entropy": 1.0, **kwargs})


def test_fixed_gains_also_count_pinned_windows_and_reset():
    c = PIController(target_entropy=1.0, kp=10.0, ki=0.0, authority_window=3)
    for _ in range(3):
        c.update(2.0)
    assert c.no_authority and c.metrics()["pinned"] == 3.0 and "kappa" not in c.metrics()
    c.update(1.05)  # alpha 0.5: no longer pinned
    assert c.pinned == 0 and not c.no_authority


def test_the_authority_diagnostic_is_said_once(caplog):
    method = EntroPIC(EntroPICConfig(target_entropy=1.0, gains="auto", authority_window=5, threshold=0.9))
    with caplog.at_level("WARNING", logger="entropic_rl"):
        for _ in range(12):
            method.update(Window(0.5, 1.0, mixed=0.5))  # entropy 0.5 against 1: alpha pinned at -1
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "pinned at alpha_min (-1) for 5 steps with the entropy below its target" in messages[0]
    assert (
        "threshold 0.9" in messages[0] and "lower method.threshold (or method.second_actuator=threshold" in messages[0]
    )
    assert method.metrics()["entropic/pinned"] == 12.0 and "entropic/kappa" in method.metrics()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 5.0), min_size=1, max_size=80),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_auto_alpha_kappa_and_integral_stay_in_bounds(entropies, mixed):
    c = auto(target=0.5)
    for h in entropies:
        alpha = c.update(h, mixed=mixed)
        assert -1.0 <= alpha <= 1.0 and -1.0 <= c.integral <= 1.0
        assert 0.1 <= c.kappa <= 1000.0 and c.adapt in (-1.0, -0.5, 0.0, 0.5, 1.0)


def test_auto_state_saved_before_bounds_were_kept_resumes():
    c = auto()
    for h in (1.1, 1.2, 0.9):
        c.update(h)
    state = c.state_dict()
    del state["bounds"]
    resumed = auto()
    resumed.load_state_dict(state)
    assert resumed.bounds == [] and resumed.kappa == c.kappa and resumed.update(1.1) == c.update(1.1)

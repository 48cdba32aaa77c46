"""entropic compare: methods x seeds, skipping finished runs and resuming interrupted ones, the
held-out evaluation, the summary with confidence intervals; and the statistics behind it."""

import json
import math
import shutil

import pytest

from entropic_rl.cli import main
from entropic_rl.evaluation.statistics import (
    below_verdict,
    difference_verdict,
    format_ci,
    mean_ci,
    paired_problem_variance,
    seeds_needed,
)
from entropic_rl.trainer import loop
from entropic_rl.trainer.compare import compare, method_overrides, parse_seeds, tracking
from entropic_rl.util.files import held_by_this_process
from test_train import TINY, metrics

SMALL = [*TINY, "train.steps=3", "method.target_entropy=0.5", "method.kp=2"]


def test_compare_trains_evaluates_and_summarises_then_skips_what_is_done(tmp_path, monkeypatch, capsys, saved_figures):
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "grpo,entropic", "--seeds", "2", "--out", str(out), "--eval-n", "2"]
    assert main([*args, "--eval-problems", "4", *SMALL]) == 0
    table = (out / "compare.md").read_text()
    assert "| grpo |" in table and "| entropic |" in table and "held-out avg@2" in table
    for run in ("grpo-seed0", "grpo-seed1", "entropic-seed0", "entropic-seed1"):
        assert [r["step"] for r in metrics(out / run)] == [1, 2, 3]
        heldout = json.loads((out / run / "heldout.json").read_text())
        assert heldout["arithmetic"]["problems"] == 4
    summary = json.loads((out / "compare.json").read_text())
    assert [s["run"] for s in summary["grpo"]] == ["grpo-seed0", "grpo-seed1"]
    assert summary["entropic"][0]["target"] == 0.5
    assert summary["grpo"][0]["target"] is None and summary["grpo"][0]["tracking_error"] is not None  # vs 0.5
    entropy, accuracy = saved_figures["compare.png"].axes  # per method: the mean over seeds of a 3-step mean
    for ax, key in ((entropy, "entropy/mean"), (accuracy, "reward/accuracy")):
        assert [line.get_label() for line in ax.lines] == ["grpo (2 seeds)", "entropic (2 seeds)"]
        for line, method in zip(ax.lines, ("grpo", "entropic"), strict=True):
            runs = [[r[key] for r in metrics(out / f"{method}-seed{seed}")] for seed in (0, 1)]
            assert line.get_ydata() == pytest.approx([sum(sum(run) / 3 for run in runs) / 2])
    assert "compare.md" in capsys.readouterr().out

    monkeypatch.setattr(loop, "train_step", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert main([*args, "--eval-problems", "4", *SMALL]) == 0
    assert (out / "compare.md").read_text() == table
    for run in out.glob("*-seed*"):  # a clone holds the committed results only: metrics and held-out scores
        shutil.rmtree(run / "checkpoints")
    assert main([*args, "--eval-problems", "4", *SMALL]) == 0
    assert (out / "compare.md").read_text() == table
    with pytest.raises(ValueError, match=r"grpo-seed0: trained and evaluated at 3 steps, but train\.steps is 4"):
        compare(None, [*SMALL, "train.steps=4"], ["grpo"], [0], out, eval_n=2, eval_problems=4)


def test_an_interrupted_run_is_resumed(tmp_path, monkeypatch):
    real_step, calls = loop.train_step, []

    def crashing_step(*a, **kw):
        calls.append(1)
        if len(calls) == 3:  # after the checkpoint at step 2
            raise RuntimeError("killed")
        return real_step(*a, **kw)

    monkeypatch.setattr(loop, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="killed"):
        compare(None, SMALL, ["entropic"], [0], tmp_path, eval_n=2, eval_problems=2)
    monkeypatch.setattr(loop, "train_step", real_step)
    calls.clear()
    compare(None, SMALL, ["entropic"], [0], tmp_path, eval_n=2, eval_problems=2)
    assert [r["step"] for r in metrics(tmp_path / "entropic-seed0")] == [1, 2, 3]


def test_a_run_another_process_trains_is_passed_over_and_left_out(tmp_path, capsys):
    # a second open file of the lock: flock refuses it, as it would another process's
    with held_by_this_process(tmp_path / "grpo-seed1"):
        compare(None, SMALL, ["grpo", "entropic"], [0, 1], tmp_path, eval_n=2, eval_problems=2)
    assert "grpo-seed1: another process is training it; passed over" in capsys.readouterr().err
    assert not (tmp_path / "grpo-seed1" / "metrics.jsonl").exists()
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert [s["run"] for s in summary["grpo"]] == ["grpo-seed0"]
    assert [s["run"] for s in summary["entropic"]] == ["entropic-seed0", "entropic-seed1"]
    with held_by_this_process(tmp_path / "grpo-seed0") as held:  # released when its holder is done
        assert held


def test_tracking_hand_computed():
    target = 1.0
    settled = [2.0] * 5 + [1.05, 0.95] * 20  # in the ±10% band from step 5 on
    result = tracking(settled, target)
    assert result["settling_step"] == 5 + 10  # the first 10-step running mean wholly in the band ends there
    assert result["tracking_error"] == pytest.approx(0.05)
    assert result["oscillation"] == pytest.approx(0.05)
    assert result["bias"] == pytest.approx(0.0, abs=1e-12)  # as many steps at 1.05 as at 0.95
    assert tracking([0.9] * 30, target)["bias"] == pytest.approx(-0.1)  # in the band from the start, 10% below
    alternating = tracking([1.5, 0.5] * 20, target)  # the 10-step running mean sits on the target at once
    assert alternating["settling_step"] == 10 and alternating["oscillation"] == pytest.approx(0.5)
    assert tracking([2.0] * 30, target) == {
        "settling_step": None,
        "tracking_error": 1.0,
        "bias": 1.0,
        "oscillation": 0.0,
    }
    assert tracking([1.0], None)["tracking_error"] is None


def test_seeds_needed_and_the_problems_share():
    # variance 1, half-width 1: t(S-1) / sqrt(S) <= 1 first at S = 7 (2.447 / 2.646 = 0.925; S = 6: 1.052)
    assert seeds_needed(1.0, 1.0) == 7
    assert seeds_needed(0.0, 0.01) == 2
    assert seeds_needed(1.0, 0.01, most=100) is None
    assert paired_problem_variance([1.0, 0.0, 1.0], [0.0, 0.0, 0.0]) == pytest.approx((1 / 3) / 3)
    with pytest.raises(ValueError, match="as many of each"):
        paired_problem_variance([1.0], [0.0])


def test_mean_ci_and_verdicts():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert math.isnan(mean_ci([5.0])[1])
    assert below_verdict([0.01, 0.02, 0.03], 0.1) == "held"
    assert below_verdict([0.5, 0.6, 0.7], 0.1) == "not held"
    assert below_verdict([0.0, 0.2, 0.05], 0.1) == "not distinguishable"
    assert below_verdict([0.01], 0.1) == "not distinguishable"  # one seed is an anecdote
    # paired by seed: differences 0.20, 0.21, 0.22 -> 0.21 ± 4.303 * 0.01 / sqrt(3)
    mean, half, verdict = difference_verdict([1.2, 0.71, 1.22], [1.0, 0.5, 1.0])
    assert (mean, half, verdict) == (pytest.approx(0.21), pytest.approx(4.303 * 0.01 / 3**0.5), "higher")
    assert difference_verdict([0.0, 0.0, 0.0], [1.1, 1.2, 1.3])[2] == "lower"
    assert difference_verdict([1.0, 0.0, 2.0], [0.5, 0.5, 0.5])[2] == "not distinguishable"
    assert difference_verdict([2.0], [1.0])[2] == "not distinguishable"
    with pytest.raises(ValueError, match="as many"):
        difference_verdict([1.0], [1.0, 2.0])
    assert format_ci([0.1, 0.2, 0.3], percent=True) == "20.0% ± 24.8%"
    assert format_ci([]) == "-"


def test_seeds_and_bad_methods(cli_error):
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,7") == [4, 7]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("x")
    cli_error(["compare", "--methods", "grpo,nope"], "unknown method 'nope'")


def test_method_variants_set_fields_of_their_runs(tmp_path, cli_error):
    assert method_overrides("aec:target_entropy=0.3:delta=0.001") == [
        "method.name=aec",
        "method.target_entropy=0.3",
        "method.delta=0.001",
    ]
    assert method_overrides("clip-cov:train.clip_high=1.0:fraction=0.1") == [
        "method.name=clip-cov",
        "train.clip_high=1.0",
        "method.fraction=0.1",
    ]
    with pytest.raises(ValueError, match="NAME:field=value"):
        method_overrides("aec:0.3")
    compare(None, [*TINY, "train.steps=2"], ["aec:target_entropy=0.4", "entropic:threshold=0.5"], [0], tmp_path, 2, 2)
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert summary["aec:target_entropy=0.4"][0]["target"] == pytest.approx(0.4)  # its own target
    config = (tmp_path / "entropic:threshold=0.5-seed0" / "config.yaml").read_text()
    assert "threshold: 0.5" in config
    (scores,) = json.loads((tmp_path / "entropic:threshold=0.5-seed0" / "heldout.json").read_text()).values()
    assert len(scores["correct"]) == scores["problems"] == 2  # each problem's correct samples, of 2
    assert sum(scores["correct"]) / 4 == pytest.approx(scores["avg@2"])
    cli_error(["compare", "--methods", "grpo,grpo", "--out", str(tmp_path)], "listed twice")


def test_a_run_whose_checkpoints_are_all_damaged_is_not_silently_started_again(tmp_path):
    compare(None, SMALL, ["grpo"], [0], tmp_path, eval_n=2, eval_problems=2)
    run_dir = tmp_path / "grpo-seed0"
    (run_dir / "heldout.json").unlink()
    for manifest in (run_dir / "checkpoints").glob("step_*/manifest.json"):
        manifest.unlink()  # e.g. checkpoints written before manifests existed
    records = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match=r"no intact checkpoint to resume from: .*manifest\.json: missing"):
        compare(None, SMALL, ["grpo"], [0], tmp_path, eval_n=2, eval_problems=2)
    assert (run_dir / "metrics.jsonl").read_text() == records


def test_a_run_that_settles_only_as_it_ends_is_tracked_over_its_second_half():
    entropy = [0.5] * 51 + [0.3] * 9  # the running mean enters the band too late to have steps after it
    result = tracking(entropy, 0.3)
    assert result["settling_step"] is None and result["tracking_error"] == pytest.approx((21 * 0.2 / 0.3) / 30)

"""entropic reproduce: the report's numbers and verdicts computed from finished runs (written here by
hand, so that no training is needed), the experiments it runs, and its command line."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from entropic_rl.cli import main
from entropic_rl.trainer import gains_matrix, reproduction
from entropic_rl.trainer.reproduction import EXPERIMENTS, report
from entropic_rl.util import files
from entropic_rl.util.files import held_by_this_process


def fake_run(
    run_dir: Path, entropy: list[float], target: float | None, avg: float, passed: float, logged: dict | None = None
) -> None:
    """A finished run: metrics.jsonl with constant-ish entropy (and ``logged`` in every record),
    heldout.json with the given rates."""
    run_dir.mkdir(parents=True)
    records = []
    for step, h in enumerate(entropy, start=1):
        record = {
            "step": step,
            "entropy/mean": h,
            "reward/accuracy": 0.5,
            "perf/step_time": 1.0,
            "entropy/confident_share@0.8": 0.6,
            "entropy/confident_share@0.95": 0.3,
            **(logged or {}),
        }
        if target is not None:
            record.update({"entropic/target": target, "entropic/saturated": float(step % 4 == 0)})
        records.append(record)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "heldout.json").write_text(json.dumps({"heldout": {"avg@8": avg, "pass@8": passed, "problems": 200}}))


def test_report_states_verdicts_from_the_runs(tmp_path, saved_figures):
    runs = tmp_path / "runs"
    for seed, wiggle in enumerate((0.0, 0.002, -0.002)):
        a = runs / "a-default"
        fake_run(a / f"grpo-seed{seed}", [0.06 + wiggle] * 40, None, 0.80, 0.90 + wiggle)
        # held 2% above target; pass@8 higher than GRPO's by 0.05 every seed
        fake_run(a / f"entropic-seed{seed}", [0.306 + wiggle] * 40, 0.3, 0.80, 0.95 + wiggle)
        c = runs / "c-off-policy"
        fake_run(c / f"entropic:ki=0.0-seed{seed}", [0.25 + wiggle] * 40, 0.3, 0.7, 0.8)  # P: 17% below
        fake_run(c / f"entropic-seed{seed}", [0.3 + wiggle] * 40, 0.3, 0.7, 0.8)
        f = runs / "f-baselines"
        fake_run(f / f"grpo-seed{seed}", [0.06 + wiggle] * 40, None, 0.8, 0.9)
        fake_run(f / f"nsr-seed{seed}", [0.3 + wiggle] * 4 + [0.5 + wiggle] * 36, None, 0.5, 0.9)  # rises
        fake_run(f / f"entropic-seed{seed}", [0.3 + wiggle] * 40, 0.3, 0.5 + wiggle, 0.9)
        h = runs / "h-off-policy"
        fake_run(h / f"entropic-seed{seed}", [0.3 + wiggle] * 40, 0.3, 0.5 + wiggle, 0.9)
        fake_run(h / f"kl-cov-seed{seed}", [0.15 + wiggle] * 40, None, 0.5, 0.9)  # 50% below
    doc, figures = tmp_path / "docs" / "reproduction.md", tmp_path / "docs" / "figures" / "reproduction"
    text = report(runs, doc, figures)
    assert doc.read_text() == text
    claims = text.split("## The paper's claims, here")[1].split("## Goals")[0]
    claim = {line[0]: line for line in claims.split("\n- ")[1:]}
    assert (
        "**held** for negative samples" in claim["1"]
        and "final minus initial +0.20 ± 0.00 nats over 3 seed(s): higher" in claim["1"]
        and "(`nsr` minus GRPO +0.44 ± 0.00 nats over 3 seed(s): higher)" in claim["1"]
    )
    assert "tracking error 2.0% ± 1.7% (bias 2.0% ± 1.7%), **held**" in claim["2"]
    assert claim["3"].startswith("3.") and "**held**: off-policy, P alone ends with bias -16.7%" in claim["3"]
    assert "Not tested yet" in claim["4"]  # d-threshold has no runs
    assert "pass@8 95.0% ± 0.5% against 90.0% ± 0.5% (paired +5.00 ± 0.00 points over 3 seed(s): higher)" in claim["5"]
    assert (
        "| `a-default` (3 seeds) | 60.0% ± 0.0% | 60.0% ± 0.0% | 30.0% ± 0.0% | 30.0% ± 0.0% |" in text
    )  # the confident shares
    assert "Not measured yet: `a-worked`" in text
    # entropic minus each baseline, paired: tracking error below grpo's (80% off 0.3) and nsr's; avg@8 0.5 against 0.8
    assert (
        "| `grpo`, f-baselines (3 seeds) | -79.56 ± 1.91 (EntroPIC) | -30.00 ± 0.50 (grpo) | +0.00 ± 0.00 (n.d.) |"
        in text
    )
    assert "| `nsr`, f-baselines (3 seeds) | -66.22 ± 1.91 (EntroPIC) | +0.00 ± 0.50 (n.d.) |" in text
    assert "| `kl-cov`, h-off-policy (3 seeds) | -49.56 ± 1.91 (EntroPIC) |" in text  # its own cell's entropic
    for key in ("a-default", "c-off-policy", "f-baselines", "h-off-policy"):
        methods = [
            m for m in next(e for e in EXPERIMENTS if e.key == key).methods if (runs / key / f"{m}-seed0").is_dir()
        ]
        assert [line.get_label() for line in saved_figures[f"{key}.png"].axes[0].lines] == [
            f"{m} (3 seeds)" for m in methods
        ]
        assert f"](figures/reproduction/{key}.png)" in text
    grpo, entropic = saved_figures["a-default.png"].axes[0].lines  # seeds' entropies 0.06 and 0.306, +-0.002
    assert list(grpo.get_ydata()) == pytest.approx([0.06] * 36) and list(entropic.get_ydata()) == pytest.approx(
        [0.306] * 36
    )
    assert text.count("**Not run yet.**") == 6  # a-worked, b-targets, d-threshold, e-reference, i-accuracy, g-smollm2
    assert "entropic compare --config configs/worked.yaml --methods grpo,entropic" in text
    # a comparison short of seeds says so
    fake_run(runs / "d-threshold" / "entropic-seed0", [0.3] * 40, 0.3, 0.8, 0.9)
    text = report(runs, doc, figures)
    assert "Unfinished: `entropic:threshold=0.5`, `entropic`" in text


def test_goals_on_worked_addition(tmp_path):
    runs = tmp_path / "runs"
    for seed, wiggle in enumerate((0.0, 0.001, -0.001)):
        a = runs / "a-worked"
        fake_run(a / f"grpo-seed{seed}", [0.03 + wiggle] * 60, None, 0.6, 0.9)
        fake_run(a / f"entropic-seed{seed}", [0.2] * 5 + [0.102 + wiggle] * 55, 0.1, 0.6, 0.9 + wiggle)
        fake_run(a / f"aec:target_entropy=0.1-seed{seed}", [0.13 + wiggle] * 60, None, 0.6, 0.9)
        fake_run(a / f"aec-trl:target_entropy=0.1-seed{seed}", [0.101] * 60, None, 0.6, 0.9)  # 1% off
    text = report(runs, tmp_path / "r.md", tmp_path / "fig")
    goals = text.split("## Goals on worked addition")[1].split("## Where")[0]
    assert "`entropic`: tracking error at most 5%: 2.0% ± 2.5%, **met**" in goals
    # 5 steps outside the band, then the 10-step window
    assert "`entropic`: settling within 50 steps, every seed: 15 ± 0 (seeds: 15, 15, 15; **met**)" in goals
    assert (
        "`entropic`: alpha saturated on at most 10% of steps (over the whole run): 25.0% ± 0.0%, **not met**" in goals
    )
    assert (
        "`entropic`'s tracking error against `aec:target_entropy=0.1`'s, lower or equal: -28.00 ± 0.00 points" in goals
    )
    assert "`entropic`'s tracking error against `aec-trl:target_entropy=0.1`'s, lower or equal: +1.00 ± " in goals
    assert (
        "`entropic`'s pass@8 against `grpo`'s, higher or equal: +0.00 ± 0.25 points over 3 seed(s), not distinguishable"
        in goals
    )
    assert "gains=auto" not in goals  # no finished runs: no lines
    for seed in range(2):  # auto with 2 seeds: 30% below target, never settles
        fake_run(runs / "a-worked" / f"entropic:gains=auto-seed{seed}", [0.07] * 60, 0.1, 0.6, 0.9)
    text = report(runs, tmp_path / "r.md", tmp_path / "fig")
    goals = text.split("## Goals on worked addition")[1].split("## Where")[0]
    assert "`a-worked` `entropic:gains=auto`: tracking error 30.0% ± 0.0% (bias -30.0% ± 0.0%), **not held**" in text
    assert "`entropic:gains=auto`: tracking error at most 5%: 30.0% ± 0.0%, **not met**" in goals
    assert "`entropic:gains=auto`: settling within 50 steps, every seed: a seed never settles (**not met**)" in goals
    assert (
        "`entropic:gains=auto`'s pass@8 against `grpo`'s, higher or equal: +0.00 ± 0.00 points over 2 seed(s)" in goals
    )


def test_run_experiments_runs_the_chosen_comparisons_in_order(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduction, "compare", lambda *args: calls.append(args))
    monkeypatch.chdir(Path(__file__).parents[1])  # the repository's root: configs/ is read from there
    reproduction.run_experiments(tmp_path, EXPERIMENTS, ["c-off-policy", "a-worked"])
    assert [(c[0], c[2], c[3], c[4].name) for c in calls] == [
        (
            "configs/worked.yaml",
            ["grpo", "entropic", "aec:target_entropy=0.1", "entropic:gains=auto", "aec-trl:target_entropy=0.1"],
            [0, 1, 2],
            "a-worked",
        ),
        ("configs/off-policy.yaml", ["entropic:ki=0.0", "entropic"], [0, 1, 2], "c-off-policy"),
    ]
    for experiment in EXPERIMENTS:
        assert experiment.config is None or Path(experiment.config).is_file()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"worked\.yaml: not found; run entropic reproduce from the repository"):
        reproduction.run_experiments(tmp_path, EXPERIMENTS, ["a-worked"])


def test_a_run_another_experiment_finished_on_the_same_configuration_is_copied(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduction, "compare", lambda *args: None)
    monkeypatch.chdir(Path(__file__).parents[1])
    fake_run(tmp_path / "a-worked" / "grpo-seed0", [0.1] * 150, None, 0.5, 0.9)  # configs/worked.yaml: 150 steps
    (tmp_path / "a-worked" / "grpo-seed0" / "checkpoints").mkdir()  # not copied
    fake_run(tmp_path / "a-worked" / "entropic-seed1", [0.1] * 150, 0.1, 0.5, 0.9)
    fake_run(tmp_path / "a-default" / "grpo-seed1", [0.3] * 300, None, 0.5, 0.9)  # another configuration
    (tmp_path / "b-targets" / "entropic-seed1").mkdir(parents=True)  # started there: left alone
    reproduction.run_experiments(tmp_path, EXPERIMENTS, ["b-targets"])
    copied = tmp_path / "b-targets" / "grpo-seed0"
    assert (copied / "metrics.jsonl").read_text() == (
        tmp_path / "a-worked" / "grpo-seed0" / "metrics.jsonl"
    ).read_text()
    assert sorted(p.name for p in copied.iterdir()) == ["heldout.json", "metrics.jsonl"]
    assert sorted(p.name for p in (tmp_path / "b-targets").iterdir()) == ["entropic-seed1", "grpo-seed0"]
    assert not any((tmp_path / "b-targets" / "entropic-seed1").iterdir())


def test_a_run_of_the_other_suite_with_the_same_resolved_configuration_is_copied(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduction, "compare", lambda *args: None)
    monkeypatch.chdir(Path(__file__).parents[1])
    paper, gains = tmp_path / "paper", tmp_path / "gains"
    fake_run(paper / "a-default" / "entropic-seed1", [0.3] * 300, 0.3, 0.5, 0.9)  # fixed gains K_p 10, K_i 0.1 (FIXED)
    fake_run(paper / "a-default" / "entropic-seed2", [0.3] * 200, 0.3, 0.5, 0.9)  # not trained to its end
    fake_run(paper / "f-baselines" / "entropic-seed0", [0.3] * 300, 0.3, 0.5, 0.9)
    (paper / "f-baselines" / "entropic-seed0" / "heldout.json").write_text('{"arithmetic": {"avg@4": 0.5}}')
    fake_run(paper / "d-threshold" / "entropic:threshold=0.5-seed1", [0.3] * 300, 0.3, 0.5, 0.9)  # another run
    reproduction.run_experiments(gains, gains_matrix.EXPERIMENTS, ["default"], [(paper, EXPERIMENTS)])
    assert [p.name for p in (gains / "default").iterdir()] == ["entropic:kp=10.0:ki=0.1-seed1"]


def test_reproduce_command_line(tmp_path, capsys):
    doc = tmp_path / "reproduction.md"
    args = ["reproduce", "--report-only", "--runs", str(tmp_path / "none"), "--doc", str(doc)]
    assert main([*args, "--figures", str(tmp_path / "fig")]) == 0
    assert doc.read_text().count("**Not run yet.**") == len(EXPERIMENTS)
    assert main(["reproduce", "--only", "a-worked,zz"]) == 2
    assert "unknown experiment 'zz'; choose from a-worked, a-default" in capsys.readouterr().err


# ---- the gains suite: gains auto against fixed gains over a matrix of plants (issue 15) ----


def fake_sweep(cell: Path) -> None:
    """The default cell's sweep, 3 seeds: tracking errors auto 3.5%, authors' 30% (miss), K_p 3 10%,
    K_p 10 3% (the best), K_p 30 5%, AEC 2%; auto's kappa 2.7, 3.0, 3.3 (K_p 9 to 11)."""
    for seed, wiggle in enumerate((0.0, 0.0003, -0.0003)):
        kappa = {"entropic/kappa": (2.7, 3.0, 3.3)[seed]}
        for row, entropy in (
            (gains_matrix.AUTO, 0.3105),
            (gains_matrix.AUTHORS, 0.21),
            ("entropic:kp=3.0:ki=0.03", 0.27),
            ("entropic:kp=10.0:ki=0.1", 0.309),
            ("entropic:kp=30.0:ki=0.3", 0.315),
            ("aec:target_entropy=0.3", 0.306),
        ):
            target = None if row.startswith("aec") else 0.3
            logged = kappa if row == gains_matrix.AUTO else {}
            fake_run(cell / f"{row}-seed{seed}", [entropy + wiggle] * 40, target, 0.8, 0.9, logged)


def test_gains_matrix_reports_each_goal_from_the_runs(tmp_path, saved_figures):
    runs = tmp_path / "runs"
    fake_sweep(runs / "default")
    doc = tmp_path / "gains-matrix.md"
    text = gains_matrix.report(runs, doc, tmp_path / "fig")
    assert doc.read_text() == text
    row = "| `default` | 0.3 | 3.5% ± 0.2% | 30.0% ± 0.2% | 10.0% ± 0.2% | 3.0% ± 0.2% | 5.0% ± 0.2% | 2.0% ± 0.2% |"
    # the best fixed gains, auto's error over theirs, and where auto's gain settled (kappa / H_tar)
    assert row + " kp=10.0:ki=0.1 | 1.17 | 9–11 |" in text
    assert "| `smollm2` | 0.1 | - | - |  | - | - |  | - | - | - |" in text  # its four rows only
    goals = text.split("## The goals, cell by cell")[1].split("## default")[0]
    within, authors, aec = next(line for line in goals.splitlines() if line.startswith("- `default`")).split("; ")
    assert "the best fixed gains (`entropic:kp=10.0:ki=0.1`, on these seeds auto 3.5%, best 3.0%" in within
    assert "ratio 1.17): auto − 1.5 × best -1.00 ± 0.1" in within
    assert within.endswith("(**interim: 3 of 7 seeds, not judged yet**)")  # judged on the confirmation's 7
    assert (
        "better than the authors' gains, which miss: auto − authors' -26.50 ± 0.50 points" in authors
        and "(**met**)" in authors
    )
    assert "at least as precise as AEC: auto − AEC +1.50 ± 0.00 points" in aec and "(**not met**)" in aec
    assert "**Not met in `default`: the condition" in text  # AEC is more precise here
    assert text.count("**Not run yet.**") == len(gains_matrix.CELLS) - 1
    assert "| `lr-low` | 0.3 | - |" in text
    assert saved_figures["default.png"].axes[0].lines  # the cell's figure plots its rows


def test_gains_matrix_judges_the_1_5x_goal_on_the_confirmation_seeds(tmp_path):
    runs = tmp_path / "runs"
    fake_sweep(runs / "default")
    (confirmation,) = gains_matrix.confirmations(runs)  # the one cell whose sweep has finished
    assert (confirmation.key, confirmation.methods) == ("default", (gains_matrix.AUTO, "entropic:kp=10.0:ki=0.1"))
    assert confirmation.seeds == gains_matrix.CONFIRM_SEEDS == 7 and confirmation.overrides == ()
    for seed in range(3, 7):  # auto 4.5% on the new seeds, K_p 10 3%: auto - 1.5 x best = 0 on them
        fake_run(runs / "default" / f"{gains_matrix.AUTO}-seed{seed}", [0.3135] * 40, 0.3, 0.8, 0.9)
        fake_run(runs / "default" / f"entropic:kp=10.0:ki=0.1-seed{seed}", [0.309] * 40, 0.3, 0.8, 0.9)
    text = gains_matrix.report(runs, tmp_path / "gains-matrix.md", tmp_path / "fig")
    goals = next(line for line in text.splitlines() if line.startswith("- `default`"))
    assert "on these seeds auto 4.1%, best 3.0%, ratio 1.36): auto − 1.5 × best -0.43 ± 0.5" in goals
    assert "points over 7 seed(s) (**not distinguishable**)" in goals
    assert "auto − authors' -26.50 ± 0.50 points over 3 seed(s)" in goals  # the other goals: the sweep's seeds
    assert "| `default` | 0.3 | 3.5% ± 0.2% |" in text  # the table: the sweep's seeds


def test_reproduce_suite_gains_runs_the_confirmations_after_the_sweeps(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduction, "compare", lambda *args: calls.append(args))
    monkeypatch.chdir(Path(__file__).parents[1])
    runs = tmp_path / "runs"
    fake_sweep(runs / "default")
    args = ["reproduce", "--suite", "gains", "--only", "default,lr-low", "--runs", str(runs)]
    assert main([*args, "--doc", str(tmp_path / "g.md"), "--figures", str(tmp_path / "fig")]) == 0
    assert [(rows[0], seeds, out.name) for _, _, rows, seeds, out, _, _ in calls] == [
        (gains_matrix.AUTO, [0, 1, 2], "default"),
        (gains_matrix.AUTO, [0, 1, 2], "lr-low"),
        (gains_matrix.AUTO, list(range(7)), "default"),  # lr-low's sweep has not run: no confirmation
    ]
    assert calls[2][2] == [gains_matrix.AUTO, "entropic:kp=10.0:ki=0.1"]


def test_gains_matrix_names_no_best_fixed_gains_before_the_sweep_has_finished(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        fake_run(runs / "worked" / f"{gains_matrix.AUTO}-seed{seed}", [0.105] * 40, 0.1, 0.8, 0.9)
        fake_run(runs / "worked" / f"{gains_matrix.GLOBAL}-seed{seed}", [0.12] * 40, 0.1, 0.8, 0.9)
    text = gains_matrix.report(runs, tmp_path / "gains-matrix.md", tmp_path / "fig")
    assert "| `worked` | 0.1 | 5.0% ± 0.0% | - | - | 20.0% ± 0.0% | - | - | - | - |" in text
    assert "not judged until the sweep has finished (1 of 4 fixed gains so far)" in text
    assert "**Not judged yet in `default`, `off-policy`," in text and "`smollm2`.**" in text


def test_gains_matrix_cells_run_their_overrides_with_the_same_rows(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduction, "compare", lambda *args: calls.append(args))
    monkeypatch.chdir(Path(__file__).parents[1])
    reproduction.run_experiments(tmp_path, gains_matrix.EXPERIMENTS, ["target-high", "smollm2"])
    (config, overrides, rows, seeds, out, _, _), smollm2 = calls
    assert (config, overrides, seeds, out.name) == (
        "embedded",
        ["method.target_entropy=0.45"],
        [0, 1, 2],
        "target-high",
    )
    assert rows == [gains_matrix.AUTO, *gains_matrix.FIXED, "aec:target_entropy=0.45"]
    assert smollm2[0] == "configs/smollm2-addition.yaml" and smollm2[3] == [0, 1, 2]
    high = next(e for e in gains_matrix.EXPERIMENTS if e.key == "target-high")
    assert high.command(Path("runs/g")).endswith("--seeds 3 --out runs/g/target-high method.target_entropy=0.45")
    for experiment in gains_matrix.EXPERIMENTS:
        assert experiment.config is None or Path(experiment.config).is_file()


def test_reproduce_suite_gains_command_line(tmp_path, capsys):
    doc = tmp_path / "gains.md"
    args = ["reproduce", "--suite", "gains", "--report-only", "--runs", str(tmp_path / "none"), "--doc", str(doc)]
    assert main([*args, "--figures", str(tmp_path / "fig")]) == 0
    assert doc.read_text().count("**Not run yet.**") == len(gains_matrix.CELLS)
    assert main(["reproduce", "--suite", "gains", "--only", "a-worked"]) == 2
    assert "unknown experiment 'a-worked'; choose from default, off-policy" in capsys.readouterr().err


def test_paired_differences_pair_runs_by_seed_number_not_position():
    runs = [{"run": "entropic-seed0", "x": 1.0}, {"run": "entropic-seed2", "x": 3.0}]  # seed 1 not finished
    rivals = [{"run": "grpo-seed0", "x": 0.5}, {"run": "grpo-seed1", "x": 9.0}, {"run": "grpo-seed2", "x": 2.5}]
    assert reproduction.by_seed(runs, "x") == {0: 1.0, 2: 3.0}
    text, verdict = reproduction.paired(reproduction.by_seed(runs, "x"), reproduction.by_seed(rivals, "x"), "nats")
    assert text == "+0.50 ± 0.00 nats over 2 seed(s)" and verdict == "higher"  # 1.0 - 0.5 and 3.0 - 2.5


def test_the_reference_loss_is_compared_at_the_presets_method_settings_and_entropics_gains():
    preset = yaml.safe_load((Path(reproduction.__file__).parent / "presets" / "embedded.yaml").read_text())["method"]
    gains = dict(o.removeprefix("method.").split("=") for o in reproduction.FIXED)
    fields = dict(field.split("=") for field in reproduction.PRESET.split(":"))
    assert {k: float(v) for k, v in fields.items()} == {
        **{k: v for k, v in preset.items() if k != "name"},
        **{k: float(v) for k, v in gains.items()},
    }
    (e,) = [e for e in EXPERIMENTS if e.key == "e-reference"]
    assert f"entropic-reference:{reproduction.PRESET}" in e.methods


def test_gains_matrix_verdict_waits_for_every_cell_and_then_says_met(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    fake_sweep(runs / "default")
    for seed in range(3):  # AEC 33% off instead: every goal of the default cell is met
        shutil.rmtree(runs / "default" / f"aec:target_entropy=0.3-seed{seed}")
        fake_run(runs / "default" / f"aec:target_entropy=0.3-seed{seed}", [0.2] * 40, None, 0.8, 0.9)
    for seed in range(3, 7):  # the confirmation: auto 3.5% against K_p 10's 3% on the new seeds
        fake_run(runs / "default" / f"{gains_matrix.AUTO}-seed{seed}", [0.3105] * 40, 0.3, 0.8, 0.9)
        fake_run(runs / "default" / f"entropic:kp=10.0:ki=0.1-seed{seed}", [0.309] * 40, 0.3, 0.8, 0.9)
    fake_run(runs / "lr-low" / f"{gains_matrix.AUTO}-seed0", [0.3] * 40, 0.3, 0.8, 0.9)  # one seed of two rows
    fake_run(runs / "lr-low" / f"{gains_matrix.AUTHORS}-seed0", [0.2] * 40, 0.3, 0.8, 0.9)
    default, lr_low = (c for c in gains_matrix.CELLS if c.key in ("default", "lr-low"))
    monkeypatch.setattr(gains_matrix, "CELLS", (default, lr_low))
    text = gains_matrix.report(runs, tmp_path / "g.md", tmp_path / "fig")
    assert "auto − authors' -33.33 points over 1 seed(s) (**interim: 1 of 3 seeds, not judged yet**)" in text
    assert "**Not judged yet in `lr-low`; met in the other 1.**" in text
    monkeypatch.setattr(gains_matrix, "CELLS", (default,))
    text = gains_matrix.report(runs, tmp_path / "g.md", tmp_path / "fig")
    assert "**Met in every cell: the condition for `gains: auto` to be the default holds.**" in text


def test_a_second_lane_waits_for_the_run_the_first_trains_then_goes_on(tmp_path, monkeypatch, capsys):
    # Two `entropic reproduce` on one folder: the one that finds the rest of a sweep held by the other
    # waits for it (the confirmation and the report depend on it) instead of ending early.
    calls = []
    monkeypatch.setattr(reproduction, "compare", lambda *args: calls.append(args))
    monkeypatch.chdir(Path(__file__).parents[1])
    runs = tmp_path / "runs"
    held = runs / "default" / f"{gains_matrix.AUTO}-seed2"
    release, holding = threading.Event(), threading.Event()

    def other_lane():
        with held_by_this_process(held):
            holding.set()
            release.wait()

    real_wait = files.wait_until_released

    def wait_once_asked(run_dir):  # the other lane finishes only once this one has started waiting for it
        release.set()
        real_wait(run_dir)

    monkeypatch.setattr(files, "wait_until_released", wait_once_asked)
    lane = threading.Thread(target=other_lane)
    lane.start()
    holding.wait()
    args = ["reproduce", "--suite", "gains", "--only", "default", "--runs", str(runs)]
    assert main([*args, "--doc", str(tmp_path / "g.md"), "--figures", str(tmp_path / "fig")]) == 0
    lane.join()
    assert f"{held}: waiting for the process training it" in capsys.readouterr().err
    assert [out.name for *_, out, _, _ in calls] == ["default", "default"]  # once more after the wait
    assert reproduction.held_elsewhere(runs, gains_matrix.EXPERIMENTS) is None


def test_accuracy_power_splits_the_variance_and_counts_the_seeds_it_needs(tmp_path):
    runs = tmp_path / "runs"
    counts = {  # correct samples of 8 per problem, 4 problems, 3 seeds
        "entropic": [[8, 8, 4, 0], [8, 4, 4, 0], [8, 8, 8, 0]],
        "grpo": [[8, 4, 4, 0], [8, 4, 4, 0], [8, 4, 4, 0]],
    }
    for method, per_seed in counts.items():
        for seed, correct in enumerate(per_seed):
            run_dir = runs / "i-accuracy" / f"{method}-seed{seed}"
            fake_run(run_dir, [0.3] * 40, 0.3 if method == "entropic" else None, 0.5, 0.75)
            scores = {"avg@8": sum(correct) / 32, "pass@8": 0.75, "problems": 4, "correct": correct}
            (run_dir / "heldout.json").write_text(json.dumps({"arithmetic": scores}))
    lines = reproduction.accuracy_power(runs, {})
    # avg@8 differences per seed: 0.125, 0, 0.25 -> mean 12.5 points, variance 156.25 points², half-width
    # 4.303 * sqrt(0.015625 / 3) = 31.05 points. Per-problem differences' variance / 4 problems: 0.015625,
    # 0, 0.0208333 -> the problems' share 121.53 points², the seeds' 156.25 - 121.53 = 34.72. Seeds for
    # ±2 points: t * sqrt(0.015625 / S) <= 0.02 first at S = 151 (t 1.96 past 30 degrees of freedom);
    # with the seeds' share alone at S = 34.
    assert lines[0] == (
        "- avg@8, `entropic` minus `grpo`: +12.50 ± 31.05 points over 3 seeds, 4 problems: **not distinguishable** "
        "(half-width at most 2 points: not met). Variance of one seed's difference 156.25 points², of which the "
        "problems' draw 121.53 and the seeds' 34.72; seeds for ±2 points: 151 at 4 problems, 34 with unlimited "
        "problems."
    )
    assert lines[1].startswith("- pass@8, `entropic` minus `grpo`: +0.00 ± 0.00 points over 3 seeds")  # same passes
    assert len(lines) == 2  # no f-baselines runs: no line on the best baseline

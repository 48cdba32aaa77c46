"""Runs that survive: numerical faults skip a step and change nothing, checkpoints are verified on
resume, and a run that cannot go on stops with a message and a usable checkpoint."""

import copy
import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

from entropic_rl.cli import main
from entropic_rl.tasks import Example, get_reward, score_responses
from entropic_rl.tasks.checkers import Check
from entropic_rl.trainer import load_config, loop, train
from entropic_rl.trainer.checkpoint import latest_checkpoint
from test_train import TINY, metrics, run, untimed

ENTROPIC = ["method.target_entropy=0.5", "method.kp=2"]


def nan_output(module, inputs, output):
    return output * float("nan")


def inject(fault: str, model, method):
    """Starts ``fault`` in the current step; returns a function that ends it."""
    if fault == "sampling":  # every forward: the rollout's sampling meets it first
        handle = model.lm_head.register_forward_hook(nan_output)
        return handle.remove
    if fault == "update logits":  # only the forward with gradients
        handle = model.lm_head.register_forward_hook(lambda m, i, o: nan_output(m, i, o) if o.requires_grad else o)
        return handle.remove
    if fault == "loss":
        real = method.loss
        method.loss = lambda mb: (lambda loss, metrics: (loss * float("nan"), metrics))(*real(mb))
        return lambda: setattr(method, "loss", real)
    if fault == "gradients":
        handle = model.lm_head.weight.register_hook(lambda grad: grad * float("inf"))
        return handle.remove
    raise AssertionError(fault)


def state_of(model, optimizer, scheduler, method) -> dict:
    return copy.deepcopy(
        {
            "weights": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "method": method.state_dict(),
        }
    )


def assert_same_state(a: dict, b: dict) -> None:
    for name in ("weights",):
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), key
    assert str(a["optimizer"]) == str(b["optimizer"])
    assert a["scheduler"] == b["scheduler"] and a["method"] == b["method"]


def faulty_steps(monkeypatch, fault: str, steps: set[int]) -> list[str]:
    """Injects ``fault`` into the given steps; each faulty step must change nothing. Returns what
    was raised at each."""
    real_step, calls, raised = loop.train_step, [], []

    def step(config, model, reference, tokenizer, method, optimizer, scheduler, *rest):
        calls.append(1)
        if len(calls) not in steps:
            return real_step(config, model, reference, tokenizer, method, optimizer, scheduler, *rest)
        before = state_of(model, optimizer, scheduler, method)
        stop = inject(fault, model, method)
        try:
            return real_step(config, model, reference, tokenizer, method, optimizer, scheduler, *rest)
        except FloatingPointError as exc:
            raised.append(str(exc))
            assert_same_state(before, state_of(model, optimizer, scheduler, method))
            raise
        finally:
            stop()

    monkeypatch.setattr(loop, "train_step", step)
    return raised


@pytest.mark.parametrize(
    ("fault", "message", "regime"),
    [
        ("sampling", "non-finite logits while sampling", []),
        ("update logits", "non-finite loss", []),
        ("loss", "non-finite loss", []),
        ("gradients", "non-finite gradients", []),
        ("loss", "non-finite loss", ["train.mini_batches=2"]),  # off-policy: the faulty optimizer step
        ("update logits", "non-finite log-probs of the rollout", ["train.micro_batch_size=16"]),  # one forward
    ],
)
def test_a_numerical_fault_skips_the_step_changes_nothing_and_the_run_goes_on(
    tmp_path, monkeypatch, fault, message, regime
):
    raised = faulty_steps(monkeypatch, fault, {2})
    run_dir, _ = run(tmp_path, "train.steps=4", *ENTROPIC, *regime)
    assert len(raised) == 1 and message in raised[0]
    records = metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[1] == {"step": 2, "optim/skipped": 1.0, "optim/skipped_steps": 1.0}
    assert [r["optim/skipped_steps"] for r in records] == [0.0, 1.0, 1.0, 1.0]
    assert latest_checkpoint(run_dir).name == "step_000004"


def test_a_skipped_first_step_after_resume_still_checkpoints(tmp_path, monkeypatch):
    """No step has changed the weights since they were loaded, so they are saved unchecked."""
    run_dir, _ = run(tmp_path, "train.steps=2", *ENTROPIC)
    config = load_config(overrides=[*TINY, *ENTROPIC, "train.steps=4", "log.save_every=1", f"log.out_dir={run_dir}"])
    faulty_steps(monkeypatch, "gradients", {1})  # step 3, the first after resuming, and a save step
    train(config, resume=True)
    records = metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[2]["optim/skipped"] == 1.0
    assert latest_checkpoint(run_dir).name == "step_000004"


def test_steps_in_a_row_skipped_stop_the_run_with_a_usable_checkpoint(tmp_path, monkeypatch, capsys):
    raised = faulty_steps(monkeypatch, "gradients", {3, 4, 5})
    out = tmp_path / "run"
    args = ["train", *TINY, *ENTROPIC, "train.steps=8", f"log.out_dir={out}"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "training stopped at step 5: 3 steps in a row skipped (non-finite gradients)" in err
    assert "step_000004" in err and "train.lr" in err and "Traceback" not in err
    assert len(raised) == 3
    # Step 4 was skipped, so its checkpoint holds the weights after step 2, which are good.
    assert json.loads((latest_checkpoint(out) / "state.json").read_text())["consecutive_skips"] == 2
    monkeypatch.undo()
    assert main(["train", "--resume", str(out)]) == 0
    records = metrics(out)
    assert [r["step"] for r in records] == list(range(1, 9))
    assert [r["optim/skipped_steps"] for r in records][-1] == 2.0


def test_a_learning_rate_that_breaks_the_weights_stops_with_advice_not_a_traceback(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "train.lr=1e9", "train.steps=4", f"log.out_dir={out}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: training stopped at step 2:") and "Traceback" not in err
    assert "non-finite" in err and "train.lr (now 1e+09)" in err and "no checkpoint was written" in err
    assert latest_checkpoint(out) is None


def test_the_skip_count_resumes_exactly(tmp_path, monkeypatch):
    faulty_steps(monkeypatch, "loss", {2})
    straight, _ = run(tmp_path, "train.steps=6", *ENTROPIC, name="straight")
    monkeypatch.undo()
    faulty_steps(monkeypatch, "loss", {2})
    real_step = loop.train_step
    calls = []

    def crashing(*a, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return real_step(*a, **kw)

    monkeypatch.setattr(loop, "train_step", crashing)
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path, "train.steps=6", *ENTROPIC, name="crashed")
    monkeypatch.undo()
    resumed = train(load_config(tmp_path / "crashed" / "config.yaml"), resume=True)
    assert untimed(metrics(resumed)) == untimed(metrics(straight))


def corrupt(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: len(data) // 2]))


@pytest.mark.parametrize(
    ("file", "how", "problem"),
    [
        ("optimizer.pt", "flip", "checksum mismatch"),
        ("model.safetensors", "truncate", "truncated"),
        ("manifest.json", "truncate", "unreadable"),
        ("state.json", "delete", "state.json: missing"),
    ],
)
def test_a_damaged_checkpoint_is_named_and_the_previous_one_used(tmp_path, capsys, file, how, problem):
    straight = tmp_path / "straight"
    assert main(["train", *TINY, *ENTROPIC, "train.steps=6", f"log.out_dir={straight}"]) == 0
    out = tmp_path / "damaged"
    assert main(["train", *TINY, *ENTROPIC, "train.steps=4", f"log.out_dir={out}"]) == 0
    damaged = out / "checkpoints" / "step_000004" / file
    damaged.unlink() if how == "delete" else corrupt(damaged, how)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "train.steps=6"]) == 0
    err = capsys.readouterr().err
    assert f"damaged checkpoint: {damaged}" in err
    assert problem in err and "resuming from" in err and "step_000002" in err
    assert untimed(metrics(out)) == untimed(metrics(straight))  # steps 3-4 again, exactly


def test_no_intact_checkpoint_stops_with_exit_code_2_and_writes_nothing(tmp_path, cli_error):
    out = tmp_path / "run"
    assert main(["train", *TINY, "train.steps=4", f"log.out_dir={out}"]) == 0
    for step in ("step_000002", "step_000004"):
        corrupt(out / "checkpoints" / step / "model.safetensors", "flip")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    message = cli_error(["train", "--resume", str(out)], "no intact checkpoint")
    assert "step_000004/model.safetensors: checksum mismatch" in message and "step_000002" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_resumes(tmp_path, monkeypatch, capsys):
    from entropic_rl.trainer import checkpoint

    straight = tmp_path / "straight"
    assert main(["train", *TINY, "train.steps=4", f"log.out_dir={straight}"]) == 0
    real_save, saves = torch.save, []

    def filling_disk(obj, path, *a, **kw):
        saves.append(path)
        if len(saves) == 3:  # the optimizer of the second checkpoint
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(checkpoint.torch, "save", filling_disk)
    out = tmp_path / "full"
    assert main(["train", *TINY, "train.steps=4", f"log.out_dir={out}"]) == 1
    err = capsys.readouterr().err
    assert "training stopped at step 4: its checkpoint could not be written" in err
    assert "No space left on device" in err and "Free space, then: entropic train --resume" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000002"]  # no partial folder
    monkeypatch.undo()
    assert main(["train", "--resume", str(out)]) == 0
    assert untimed(metrics(out)) == untimed(metrics(straight))


# Reward functions for the tests below, given to the trainer as "test_reliability:<name>".
def raises(response, example):
    raise KeyError("no such field")


def hangs(response, example):
    time.sleep(60)


def returns_none(response, example):
    return None


def returns_nan(response, example):
    return float("nan")


def returns_text(response, example):
    return "1.0"


def returns_list(response, example):
    return [1.0, 0.0]


def flaky(response, example):
    """Right answers score 1, except that some calls raise, hang or return NaN."""
    text = response.strip()
    if text.endswith("1"):
        raise ValueError("flaky")
    if text.endswith("2"):
        return float("nan")
    if text.endswith("3") and len(text) % 2:
        time.sleep(60)
    return float(text == example.answer.strip())


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("raises", "error", "raised KeyError: 'no such field'"),
        ("hangs", "timeout", "took longer than 0.5 s (its time limit, reward_timeout)"),
        ("returns_none", "error", "returned 'None' of type NoneType, not a finite number"),
        ("returns_nan", "error", "returned 'nan' of type float"),
        ("returns_text", "error", "returned '1.0' of type str"),
        ("returns_list", "error", "of type list"),
    ],
)
def test_a_faulty_reward_scores_zero_is_counted_and_reported_once(capsys, name, status, message):
    reward = get_reward(f"test_reliability:{name}", timeout_s=0.5)
    example = Example("1+1=", "2")
    scores, counts = score_responses(reward, ["2", "3", "4"], [example] * 3)
    assert scores == [0.0, 0.0, 0.0] and counts[status] == 3  # a hang (60 s a response) counted as time-outs
    err = capsys.readouterr().err
    assert err.count("warning: reward") == 1 and message in err


def test_a_good_reward_in_its_worker_scores_numbers_and_checks():
    assert get_reward("test_reliability:numpy_score", timeout_s=5)("x", Example("p", "a")) == Check(0.5, "ok")


def numpy_score(response, example):
    import numpy as np

    return np.float32(0.5)


def test_a_run_with_a_flaky_reward_goes_on_and_counts_its_faults(tmp_path, capsys):
    run_dir, _ = run(tmp_path, "train.steps=2", "task.reward=test_reliability:flaky", "task.reward_timeout=0.3")
    records = metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2]
    assert sum(r["reward/errors"] for r in records) > 0 and sum(r["reward/timeouts"] for r in records) > 0
    assert capsys.readouterr().err.count("warning: reward") == 1


def load_kill_trials():
    spec = importlib.util.spec_from_file_location("kill_trials", Path(__file__).parents[1] / "scripts/kill_trials.py")
    kill_trials = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kill_trials)
    return kill_trials


def test_killed_runs_resume_to_exactly_the_uninterrupted_metrics(tmp_path):
    """scripts/kill_trials.py, 4 trials (docs/reliability.md runs 20): SIGKILL at a random moment or
    during a checkpoint write, then --resume."""
    results = load_kill_trials().run_trials(tmp_path, trials=4, seeds=1)
    assert all(r["same_metrics"] for r in results), results
    assert all("mid-checkpoint" in r["killed"] for r in results if r["mode"] == "checkpoint"), results


@pytest.mark.slow
def test_killed_trl_runs_resume_the_controller_exactly(tmp_path):
    """The same for TRL's EntroPICGRPOTrainer: killed mid-checkpoint (TRL's files written, the
    controller's not yet), resume_from_checkpoint=True takes the previous complete checkpoint, and
    the log history and the controller's final state equal the uninterrupted run's."""
    kill_trials = load_kill_trials()
    results = kill_trials.run_trials(tmp_path, trials=2, seeds=1, trainer=kill_trials.TRL)
    assert all(r["same_metrics"] for r in results), results
    assert results[1]["mode"] == "checkpoint" and "mid-checkpoint" in results[1]["killed"], results

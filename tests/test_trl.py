"""EntroPICGRPOTrainer on CPU with a tiny Llama built here: it trains, alpha follows the sign of
the entropy error, its loss is TRL's loss with the per-token loss reweighted (every loss type) and the
core's exact EntroPIC loss, the window update comes before the step wherever TRL has an old-log-prob
pass, and resume restores the controller."""

import json
import math
import re
import subprocess
import sys

import pytest
import torch

pytest.importorskip("trl", reason="the optional TRL extra (pip install -e '.[trl]')")
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from entropic_rl.core import confident_mask, entropic_weights, policy_loss
from entropic_rl.integrations.state_file import STATE_FILE
from entropic_rl.integrations.trl import EntroPICGRPOConfig, EntroPICGRPOTrainer
from entropic_rl.methods import EntroPIC
from entropic_rl.models import char_tokenizer
from test_train import tiny_llama


def first_digit_is_even(completions, **kwargs):
    return [float(c[:1] in "02468" and c[:1] != "") for c in completions]


def make_trainer(tmp_path, steps=2, trainer_class=EntroPICGRPOTrainer, **fields):
    tokenizer = char_tokenizer()
    defaults = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 4,
        "max_steps": steps,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        "entropic_threshold": 0.05,
        "entropic_kp": 0.1,
    }
    if trainer_class is GRPOTrainer:
        defaults = {k: v for k, v in defaults.items() if not k.startswith("entropic_")}
    args = (EntroPICGRPOConfig if trainer_class is EntroPICGRPOTrainer else GRPOConfig)(**{**defaults, **fields})
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(4) for b in range(4)]})
    return trainer_class(
        tiny_llama(tokenizer), first_digit_is_even, args=args, train_dataset=data, processing_class=tokenizer
    )


def logged(trainer, name):
    return [entry[name] for entry in trainer.state.log_history if name in entry]


@pytest.mark.parametrize(("target", "sign"), [(0.0, 1.0), (10.0, -1.0)])
def test_trains_and_alpha_follows_the_entropy_error(tmp_path, target, sign):
    # The tiny random model's entropy is about log(vocabulary) ~ 3 nats: a target of 0 means too
    # much entropy (alpha > 0, positives up-weighted), a target of 10 too little (alpha < 0).
    trainer = make_trainer(tmp_path, entropic_target_entropy=target)
    trainer.train()
    alphas, entropies = logged(trainer, "entropic/alpha"), logged(trainer, "entropic/entropy")
    assert len(alphas) == 2 and all(a * sign > 0 for a in alphas)
    assert all(2.0 < h < 4.0 for h in entropies)
    assert logged(trainer, "entropic/error")[0] == pytest.approx(entropies[0] - target)
    assert trainer.method.controller.steps == 2.0
    for name in ("target", "integral", "p_term", "i_term", "saturated", "confident_frac"):
        assert len(logged(trainer, f"entropic/{name}")) == 2


def test_the_loss_is_the_core_exact_entropic_loss(tmp_path, monkeypatch):
    # TRL's bnpo loss (token mean) with the reweighted advantages, against the core's policy_loss
    # with normalize="exact" on the same per-token log-probs: same value, same gradient.
    captured = {}
    trl_forward = GRPOTrainer._get_per_token_logps_and_entropies

    def capture(self, *args, **kwargs):
        captured["log_prob"], entropies, aux_loss = trl_forward(self, *args, **kwargs)
        return captured["log_prob"], entropies, aux_loss

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", capture)
    threshold = 0.044  # about half of the tiny model's token probabilities are above it
    trainer = make_trainer(tmp_path, loss_type="bnpo", entropic_threshold=threshold)
    trainer.method.load_step_state({"alpha": 0.7})
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() otherwise
    prompt = trainer.processing_class(["1+2=", "3+3="], return_tensors="pt")
    completion_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    advantages = torch.tensor([1.0, -0.5])
    inputs = {
        "prompt_ids": prompt.input_ids,
        "prompt_mask": prompt.attention_mask,
        "completion_ids": torch.tensor([[3, 4, 5, 6], [7, 8, 9, 9]]),
        "completion_mask": completion_mask,
        "advantages": advantages,
        "num_items_in_batch": completion_mask.sum(),
    }
    trainer.model.train()
    trl_loss = trainer._compute_loss(trainer.model, inputs)
    assert torch.equal(inputs["advantages"], advantages)  # restored for later iterations
    log_prob = captured["log_prob"]
    core_loss, metrics = policy_loss(
        log_prob,
        log_prob.detach(),
        advantages.unsqueeze(1).expand_as(log_prob),
        completion_mask,
        clip_low=trainer.epsilon_low,
        clip_high=trainer.epsilon_high,
        alpha=0.7,
        threshold=threshold,
        normalize="exact",
    )
    assert 0.0 < metrics["confident_frac"] < 1.0  # both kinds of token are exercised
    torch.testing.assert_close(trl_loss, core_loss)
    trl_grad, core_grad = (torch.autograd.grad(loss, log_prob, retain_graph=True)[0] for loss in (trl_loss, core_loss))
    torch.testing.assert_close(trl_grad, core_grad)
    plain, _ = policy_loss(log_prob, log_prob.detach(), advantages.unsqueeze(1).expand_as(log_prob), completion_mask)
    assert not torch.equal(core_grad, torch.autograd.grad(plain, log_prob)[0])  # alpha changed the gradient


def test_resume_restores_the_controller_to_the_uninterrupted_runs_state(tmp_path):
    straight = make_trainer(tmp_path / "straight", steps=3, save_strategy="steps", save_steps=1)
    straight.train()
    checkpoint = tmp_path / "straight" / "out" / "checkpoint-2"
    assert json.loads((checkpoint / STATE_FILE).read_text())["controller"]["steps"] == 2.0

    resumed = make_trainer(tmp_path / "resumed", steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    # two windows restored, one more: the integral and alpha of the run that was never stopped
    assert resumed.method.controller.integral != 0.0
    assert resumed.method.state_dict() == straight.method.state_dict()
    assert logged(resumed, "entropic/alpha") == logged(straight, "entropic/alpha")  # the restored log and one more

    (checkpoint / STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        make_trainer(tmp_path / "resumed", steps=3).train(resume_from_checkpoint=str(checkpoint))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"entropy_coef": 0.01}, "entropy_coef: TRL's own entropy control"),
        ({"use_adaptive_entropy": True}, "use_adaptive_entropy"),
        ({"top_entropy_quantile": 0.2}, "top_entropy_quantile"),
        ({"entropic_kp": -1.0}, "entropic_kp must be"),
        ({"entropic_threshold": 1.0}, "entropic_threshold must be in"),
        ({"entropic_schedule": "{nope"}, "entropic_schedule: not valid JSON"),
        ({"entropic_schedule": {"kind": "linear", "start": 0.5, "end": 0.1, "steps": 10}}, "entropic_target_entropy"),
        ({"entropic_alpha_min": -1.5}, "entropic_alpha_min must be >= -1 where the weights apply"),
        ({"entropic_alpha_max": 2.0}, "entropic_alpha_max must be <= 1 where the weights apply"),
        ({"entropic_normalize": "reference"}, "entropic_normalize: only exact normalisation"),
    ],
)
def test_bad_config_names_the_field(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        EntroPICGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **fields)


def test_a_schedule_from_json(tmp_path):
    args = EntroPICGRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        entropic_target_entropy=None,
        entropic_schedule='{"kind": "linear", "start": 0.5, "end": 0.1, "steps": 10}',
    )
    assert args.method_config().schedule == {"kind": "linear", "start": 0.5, "end": 0.1, "steps": 10}


def test_a_plain_grpo_config_is_refused(tmp_path):
    with pytest.raises(TypeError, match="EntroPICGRPOConfig"):
        EntroPICGRPOTrainer(
            tiny_llama(char_tokenizer()),
            first_digit_is_even,
            args=GRPOConfig(str(tmp_path), use_cpu=True, report_to="none"),
        )


@pytest.mark.slow
def test_the_example_on_two_processes_applies_one_alpha_everywhere(tmp_path):
    # examples/trl_gsm8k.py with 2 CPU processes (torchrun; Accelerate picks gloo): each process
    # samples different prompts, and both end with the same controller state.
    tokenizer = char_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tiny_llama(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "data.jsonl"
    rows = [{"question": f"{a}+{b}", "answer": f"#### {a + b}"} for a in range(4) for b in range(4)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    script = ["examples/trl_gsm8k.py", "--model", str(tmp_path / "model"), "--data", str(data), "--instruction", "="]
    options = {
        "output_dir": tmp_path / "out",
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 4,
        "use_cpu": "true",
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "no",
        "entropic_threshold": 0.05,
        "entropic_kp": 0.1,
    }
    script += [item for name, value in options.items() for item in (f"--{name}", str(value))]
    done = subprocess.run(launch + script, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # the two processes' output can interleave on one line: read the state by its pattern
    number = r"(?:nan|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    pattern = rf"EntroPIC controller on process \d: (alpha={number} integral={number} entropy={number})"
    states = re.findall(pattern, done.stdout, flags=re.MULTILINE)
    assert len(states) == 2 and states[0] == states[1], done.stdout
    assert "alpha=0 " not in states[0]  # the controller ran


def test_the_fields_parse_from_the_command_line(tmp_path):
    from trl import TrlParser

    schedule = '{"kind": "linear", "start": 0.5, "end": 0.1, "steps": 10}'
    argv = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--entropic_kp", "5"]
    argv += ["--entropic_target_entropy", "None", "--entropic_schedule", schedule]
    (args,) = TrlParser((EntroPICGRPOConfig,)).parse_args_and_config(argv)
    config = args.method_config()
    assert (config.kp, config.target_entropy, config.schedule["start"]) == (5.0, None, 0.5)


def test_the_fields_and_their_help_come_from_the_method_declaration():
    from dataclasses import fields

    from entropic_rl.methods import EntroPICConfig

    ours = {f.name: f for f in fields(EntroPICGRPOConfig)}
    for field in fields(EntroPICConfig):
        if field.name != "name":
            derived = ours[f"entropic_{field.name}"]
            assert (derived.default, derived.metadata["help"]) == (field.default, field.metadata["help"])
    assert (ours["entropic_target_entropy"].default, ours["entropic_gains"].default) == (0.1, "fixed")


def test_gains_are_the_authors_fixed_ones_unless_told_otherwise(tmp_path):
    def gains(**fields):
        args = EntroPICGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **fields)
        method = args.method_config()
        return method.gains, method.kp, method.ki

    assert gains() == ("fixed", 1.0, 0.01)
    assert gains(entropic_kp=10.0) == ("fixed", 10.0, 0.01)  # the one not given is the authors'
    assert gains(entropic_gains="auto") == ("auto", None, None)


def test_without_an_old_log_prob_pass_alpha_lags_one_step(tmp_path):
    # Plain on-policy TRL skips the old-log-prob pass: the controller is fed from the loss's entropies
    # at the end of each optimizer step, so the first step runs with alpha = 0.
    trainer = make_trainer(tmp_path, steps=3, entropic_target_entropy=0.0)
    assert not trainer.windows_before_step
    alphas = record_alphas(trainer)
    trainer.train()
    assert alphas[0] == 0.0 and all(a > 0 for a in alphas[1:])
    assert trainer.method.controller.steps == 3


@pytest.mark.parametrize(
    ("fields", "steps_per_batch"),
    [
        ({"num_iterations": 2}, 2),
        ({"steps_per_generation": 2}, 2),
        ({"gradient_accumulation_steps": 2, "steps_per_generation": 3}, 1.5),
    ],
)
def test_with_an_old_log_prob_pass_alpha_comes_before_the_step(tmp_path, fields, steps_per_batch):
    # TRL computes old log-probs when it generates: the controller is fed from that pass, once per
    # generation batch, before any step on it, counting the optimizer steps the batch serves.
    trainer = make_trainer(tmp_path, steps=4, entropic_target_entropy=0.0, **fields)
    assert trainer.windows_before_step
    alphas = record_alphas(trainer)
    trainer.train()
    assert all(a > 0 for a in alphas)  # the first step already runs with alpha from its own batch
    generations = math.ceil(4 / steps_per_batch)
    assert trainer.method.controller.steps == pytest.approx(generations * steps_per_batch)
    assert len(logged(trainer, "entropic/alpha")) == generations
    assert len(logged(trainer, "entropic/confident_frac")) == 4


def record_alphas(trainer):
    """The alpha of every micro-batch's reweighting, recorded as the trainer applies it."""
    alphas, weights = [], trainer.method.advantage_weights

    def recording(*args):
        alphas.append(trainer.method.step_state()["alpha"])
        return weights(*args)

    trainer.method.advantage_weights = recording
    return alphas


LOSS_TYPES = ["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"]  # every loss_type of TRL 1.16


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_the_loss_is_trl_loss_with_the_per_token_loss_reweighted(tmp_path, loss_type):
    # The plug-in multiplies the advantages by the weights. Expected: plain TRL with its per-token loss
    # multiplied by the weights, slipped in where TRL multiplies the per-token loss by its entropy
    # mask (top_entropy_quantile < 1). Off-policy, so the clipping of each loss type is live.
    threshold, alpha = 0.044, -0.6
    level = {"importance_sampling_level": "sequence"} if loss_type == "luspo" else {}
    ours = make_trainer(tmp_path, loss_type=loss_type, entropic_threshold=threshold, **level)
    ours.method.load_step_state({"alpha": alpha})
    plain = make_trainer(tmp_path, trainer_class=GRPOTrainer, loss_type=loss_type, top_entropy_quantile=0.5, **level)
    captured = {}
    plain_forward = plain._get_per_token_logps_and_entropies

    def capture(*args, **kwargs):
        captured["log_prob"], entropies, aux = plain_forward(*args, **kwargs)
        return captured["log_prob"], entropies, aux

    def weights_as_entropy_mask(entropies, mask, quantile):
        advantages = captured["advantages"].unsqueeze(1).expand_as(mask)
        return entropic_weights(advantages, confident_mask(captured["log_prob"], mask, threshold), alpha)

    plain._get_per_token_logps_and_entropies = capture
    plain.get_high_entropy_mask = weights_as_entropy_mask
    losses = []
    for trainer in (ours, plain):
        inputs = loss_inputs(trainer)
        captured["advantages"] = inputs["advantages"]
        losses.append(trainer._compute_loss(trainer.model, inputs))
    torch.testing.assert_close(losses[0], losses[1])
    grads = [
        torch.autograd.grad(loss, list(t.model.parameters())) for loss, t in zip(losses, (ours, plain), strict=True)
    ]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    assert 0 < confident_mask(captured["log_prob"], loss_inputs(plain)["completion_mask"], threshold).mean() < 1


def loss_inputs(trainer):
    """Two completions, off-policy (old log-probs far from the model's), advantages of both signs."""
    prompt = trainer.processing_class(["1+2=", "3+3="], return_tensors="pt")
    completion_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() otherwise
    trainer.model.train()
    return {
        "prompt_ids": prompt.input_ids,
        "prompt_mask": prompt.attention_mask,
        "completion_ids": torch.tensor([[3, 4, 5, 6], [7, 8, 9, 9]]),
        "completion_mask": completion_mask,
        "advantages": torch.tensor([1.0, -0.5]),
        "old_per_token_logps": torch.tensor([[-3.0, -2.5, -4.0, -3.2], [-2.0, -3.5, -3.0, -3.0]]),
        "num_items_in_batch": completion_mask.sum(),
    }


def test_micro_batches_of_an_optimizer_step_make_one_window(tmp_path):
    trainer = make_trainer(tmp_path, steps=3, gradient_accumulation_steps=2)
    assert not trainer.windows_before_step  # TRL generates once per optimizer step: no old-log-prob pass
    trainer.train()
    assert trainer.state.global_step == 3
    assert trainer.method.controller.steps == 3
    assert len(logged(trainer, "entropic/alpha")) == 3


def test_resume_true_passes_over_a_checkpoint_cut_short(tmp_path, capsys):
    """The controller's file is written after TRL's: a folder without it (killed mid-save) is not resumed from."""
    make_trainer(tmp_path, save_strategy="steps", save_steps=1).train()
    out = tmp_path / "out"
    (out / "checkpoint-2" / STATE_FILE).unlink()  # as if killed while checkpoint-2 was written
    resumed = make_trainer(tmp_path, steps=3)
    resumed.train(resume_from_checkpoint=True)
    assert f"passing over {out / 'checkpoint-2'}" in capsys.readouterr().err
    assert resumed.method.controller.steps == 3.0  # checkpoint-1's one step, then steps 2 and 3
    for folder in out.glob("checkpoint-*"):
        (folder / STATE_FILE).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no complete checkpoint"):
        make_trainer(tmp_path, steps=3).train(resume_from_checkpoint=True)


def test_resuming_a_finished_run_is_refused(tmp_path):
    """transformers would train one step past max_steps; nothing is changed instead."""
    make_trainer(tmp_path, save_strategy="steps", save_steps=1).train()
    with pytest.raises(ValueError, match="checkpoint-2 is at step 2 and max_steps is 2: nothing to train"):
        make_trainer(tmp_path).train(resume_from_checkpoint=True)


def test_the_second_actuator_moves_the_threshold_in_trl_while_alpha_is_pinned(tmp_path):
    # target 10 nats, far above the tiny model's ~3: alpha pinned at -1 from the first window
    trainer = make_trainer(
        tmp_path,
        steps=3,
        entropic_target_entropy=10.0,
        entropic_kp=1.0,
        entropic_second_actuator="threshold",
        entropic_threshold=0.5,
        entropic_threshold_floor=0.2,
        entropic_threshold_windows=3,
    )
    trainer.train()
    assert logged(trainer, "entropic/alpha") == [-1.0] * 3
    assert logged(trainer, "entropic/threshold") == pytest.approx([0.4, 0.3, 0.2])  # 0.1 a window to the floor


def test_auto_gains_freeze_kappa_in_trl_when_no_sequence_has_an_advantage(tmp_path):
    trainer = make_trainer(tmp_path, steps=24, entropic_gains="auto", entropic_target_entropy=3.0)
    trainer.reward_funcs = [lambda completions, **_: [0.0] * len(completions)]  # every group uniform
    trainer.train()
    assert logged(trainer, "entropic/kappa") == [3.0] * 24
    unaware = EntroPIC(trainer.args.method_config()).controller
    for entropy in logged(trainer, "entropic/entropy"):  # the same windows without their share of moving sequences
        unaware.update(entropy)
    assert unaware.kappa != 3.0  # would have adapted


def test_auto_gains_through_the_trl_config_follow_the_controller_fed_the_logged_windows(tmp_path):
    trainer = make_trainer(tmp_path, steps=24, entropic_gains="auto", entropic_target_entropy=3.0)
    trainer.train()
    assert trainer.method.controller.gains == "auto"
    replay = EntroPIC(trainer.args.method_config()).controller
    kappas = []
    for entropy in logged(trainer, "entropic/entropy"):  # mixed not logged: a window that froze kappa would differ
        replay.update(entropy)
        kappas.append(replay.kappa)
    assert logged(trainer, "entropic/kappa") == kappas
    assert kappas[:20] == [3.0] * 20 and kappas[-1] != 3.0  # adapts from window 21 on, not before

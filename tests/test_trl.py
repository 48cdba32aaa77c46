"""EntroPICGRPOTrainer on CPU with a tiny Llama built here: it trains, alpha follows the sign of
the entropy error, its loss is the core's exact EntroPIC loss, and resume restores the controller."""

import json
import subprocess
import sys

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from entropic_rl.core import policy_loss
from entropic_rl.integrations.trl import CONTROLLER_FILE, EntroPICGRPOConfig, EntroPICGRPOTrainer
from entropic_rl.models import char_tokenizer
from test_train import tiny_llama


def first_digit_is_even(completions, **kwargs):
    return [float(c[:1] in "02468" and c[:1] != "") for c in completions]


def make_trainer(tmp_path, steps=2, **fields):
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
    args = EntroPICGRPOConfig(**{**defaults, **fields})
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(4) for b in range(4)]})
    return EntroPICGRPOTrainer(
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
    assert trainer.entropic.controller.steps == 2.0
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
    trainer.entropic.alpha = 0.7
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


def test_resume_restores_the_controller(tmp_path):
    trainer = make_trainer(tmp_path, save_strategy="steps", save_steps=1)
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    saved = json.loads((checkpoint / CONTROLLER_FILE).read_text())
    assert saved == json.loads(json.dumps(trainer.entropic.state_dict()))
    assert saved["controller"]["steps"] == 2.0

    resumed = make_trainer(tmp_path, steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.entropic.controller.steps == 3.0  # two restored, one more
    assert logged(resumed, "entropic/integral") != []

    (checkpoint / CONTROLLER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=CONTROLLER_FILE):
        make_trainer(tmp_path, steps=3).train(resume_from_checkpoint=str(checkpoint))


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
    assert args.method_config().controller().target == 0.5


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
    states = sorted(line.split(": ", 1)[1] for line in done.stdout.splitlines() if "EntroPIC controller" in line)
    assert len(states) == 2 and states[0] == states[1], done.stdout
    assert "alpha=0 " not in states[0]  # the controller ran


def test_the_fields_parse_from_the_command_line(tmp_path):
    from trl import TrlParser

    schedule = '{"kind": "linear", "start": 0.5, "end": 0.1, "steps": 10}'
    argv = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--entropic_kp", "5"]
    argv += ["--entropic_target_entropy", "None", "--entropic_schedule", schedule]
    (args,) = TrlParser((EntroPICGRPOConfig,)).parse_args_and_config(argv)
    controller = args.method_config().controller()
    assert (controller.kp, controller.target) == (5.0, 0.5)


@pytest.mark.parametrize(
    "fields", [{"gradient_accumulation_steps": 2}, {"num_iterations": 2}, {"steps_per_generation": 2}]
)
def test_one_controller_update_per_optimizer_step(tmp_path, fields):
    # Micro-batches accumulate into one window; reused generations (num_iterations,
    # steps_per_generation) still give one update per optimizer step.
    trainer = make_trainer(tmp_path, steps=3, **fields)
    trainer.train()
    assert trainer.state.global_step == 3
    assert trainer.entropic.controller.steps == 3
    assert len(logged(trainer, "entropic/alpha")) == 3

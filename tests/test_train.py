import json
import math
from pathlib import Path

import pytest
import torch

from entropic_rl.cli import main
from entropic_rl.methods import method_class
from entropic_rl.models import autocast, char_tokenizer, generate, load_policy, seeded_llama
from entropic_rl.models.sampling import RejectNonFinite, Rollout
from entropic_rl.trainer import load_config, loop, train
from entropic_rl.trainer.checkpoint import latest_checkpoint
from entropic_rl.trainer.compare import method_overrides

# 1-digit addition with a short warm start: fast, and the model is right often enough that
# groups are mixed, so training really changes the model.
TINY = [
    "task.difficulty=1",
    "model.warm_start_steps=130",
    "rollout.prompts_per_step=4",
    "rollout.group_size=4",
    "rollout.max_new_tokens=8",
    "train.micro_batch_size=6",
    "train.lr=3e-3",
    "log.sample_every=2",
    "log.save_every=2",
    "log.tensorboard=false",
]


# Settings that make each method act on TINY's short runs (a bonus that switches on, tokens selected).
ACTIVE = {
    "entropic": ["method.target_entropy=0.5", "method.kp=2"],
    "entropic-reference": ["method.target_entropy=0.5", "method.kp=2"],
    "aec": ["method.target_entropy=5", "method.delta=0.01", "method.coef_max=0.05"],
    "aec-trl": ["method.target_entropy=5"],
    "aent": ["method.warmup_steps=1", "method.lr=0.01"],
    "clip-cov": ["method.cov_low=-10", "method.fraction=0.1"],
    "kl-cov": ["method.fraction=0.1", "train.mini_batches=2"],  # on-policy it is grpo: lp = lp_old
    "entropy-bonus": ["method.coef=0.01"],
}
BASELINE_METRIC = {
    "aec": "aec/coef",
    "aec-trl": "aec/coef",
    "aent": "aent/coef",
    "clip-cov": "clip-cov/selected",
    "kl-cov": "kl-cov/selected",
    "entropy-bonus": "entropy-bonus/coef",
}


def run(tmp_path, *overrides, name="run"):
    config = load_config(overrides=[*TINY, f"log.out_dir={tmp_path / name}", *overrides])
    return train(config), config


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def untimed(records):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in records]


@pytest.mark.parametrize("method", ["grpo", "entropic", "entropic-reference"])
@pytest.mark.parametrize("regime", [[], ["train.mini_batches=2", "train.epochs=2"]], ids=["on-policy", "off-policy"])
def test_a_few_steps_for_each_method(tmp_path, method, regime):
    run_dir, config = run(tmp_path, "train.steps=3", f"method.name={method}", *ACTIVE.get(method, []), *regime)
    records = metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert all(math.isfinite(v) for v in r.values())
        assert 0 <= r["reward/accuracy"] <= 1 and r["response/length"] > 0 and r["optim/grad_norm"] >= 0
        assert 0 <= r["reward/mixed"] <= 1
        assert {"entropy/mean", "reward/mean", "loss/pg_clipfrac", "loss/ppo_kl", "optim/lr"} <= r.keys()
        assert all("/" in key for key in r if key != "step")  # one scheme: <group>/<quantity>
        if method == "grpo":
            assert not any(key.startswith("entropic/") for key in r)
        else:
            for key in (
                "entropy",
                "target",
                "error",
                "alpha",
                "p_term",
                "i_term",
                "integral",
                "confident_frac",
                "weight_pos",
                "weight_neg",
                "saturated",
            ):
                assert f"entropic/{key}" in r
    assert any(r["optim/grad_norm"] > 0 for r in records)  # mixed groups: the model learns
    if regime:
        assert any(r["loss/ppo_kl"] != 0 for r in records)  # stale mini-batches: the ratio is live
    assert latest_checkpoint(run_dir).name == "step_000003"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "samples.jsonl").is_file()
    assert load_config(run_dir / "config.yaml") == config


@pytest.mark.parametrize(
    "method", ["entropy-bonus", "aec", "aec-trl", "aent", "clip-cov", "kl-cov", "nsr", "w-reinforce"]
)
def test_every_baseline_trains_in_the_loop(tmp_path, method):
    run_dir, _ = run(tmp_path, "train.steps=3", f"method.name={method}", *ACTIVE.get(method, []))
    records = metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(v) for r in records for v in r.values())
    assert any(r["optim/grad_norm"] > 0 for r in records)
    if method in BASELINE_METRIC:
        assert any(r[BASELINE_METRIC[method]] > 0 for r in records)  # the method acted


def test_kl_cov_on_policy_warns_that_it_trains_as_grpo(tmp_path, capsys):
    run(tmp_path, "train.steps=1", "method.name=kl-cov")
    assert "warning: kl-cov on-policy (train.mini_batches 1, train.epochs 1): lp equals lp_old up to rounding" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "method",
    [
        "entropic",
        "entropic:second_actuator=threshold:threshold_windows=2",  # the threshold moves: its state resumes too
        "entropic-reference",
        "aec",
        "aec-trl",
        "aent",
        "clip-cov",
    ],
)
def test_resume_after_a_crash_ends_with_the_same_metrics(tmp_path, monkeypatch, method):
    args = (
        "train.steps=6",
        *method_overrides(method),
        *ACTIVE[method.split(":")[0]],
        "train.mini_batches=2",
        "train.kl_coef=0.1",
    )
    straight, _ = run(tmp_path, *args, name="straight")

    real_step, calls = loop.train_step, []

    def crashing_step(*a, **kw):
        calls.append(1)
        if len(calls) == 5:  # after the checkpoint at step 4
            raise RuntimeError("killed")
        return real_step(*a, **kw)

    monkeypatch.setattr(loop, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path, *args, name="crashed")
    monkeypatch.setattr(loop, "train_step", real_step)
    crashed_dir = tmp_path / "crashed"
    assert latest_checkpoint(crashed_dir).name == "step_000004"
    resumed = train(load_config(crashed_dir / "config.yaml"), resume=True)

    expected, got = untimed(metrics(straight)), untimed(metrics(resumed))
    assert got == expected
    assert any(r["optim/grad_norm"] > 0 for r in expected[4:])  # the resumed steps really trained
    if "second_actuator" in method:
        assert expected[-1]["entropic/threshold"] < 0.95  # alpha was pinned: the threshold moved


def test_the_second_actuator_changes_no_run_whose_alpha_never_saturates(tmp_path):
    args = ("train.steps=4", "train.lr=1e-4", "method.target_entropy=0.6", "method.kp=1", "method.ki=0.01")
    plain, _ = run(tmp_path, *args, name="plain")
    split, config = run(tmp_path, *args, "method.second_actuator=threshold", name="split")
    records = untimed(metrics(plain))
    assert all(not r["entropic/saturated"] for r in records)
    assert untimed(metrics(split)) == [r | {"entropic/threshold": config.method.threshold} for r in records]


@pytest.mark.parametrize("method", ["grpo", "entropic", "entropic-reference"])
def test_on_policy_in_one_micro_batch_the_update_forward_gives_the_old_log_probs(tmp_path, monkeypatch, method):
    # TINY samples 4 x 4 = 16 responses a step: in one micro-batch of 16, the separate no-grad pass
    # for the old log-probs is skipped, and the run is bit-identical to one that makes it.
    extra = ["method.target_entropy=0.5", "method.kp=2"] if method != "grpo" else []
    args = ("train.steps=3", "train.micro_batch_size=16", f"method.name={method}", *extra)
    passes = []
    real_forward = loop.forward_batched
    monkeypatch.setattr(loop, "forward_batched", lambda *a: passes.append(1) or real_forward(*a))
    reused, config = run(tmp_path, *args, name="reused")
    assert loop.update_forward_is_old_pass(config) and passes == []
    monkeypatch.setattr(loop, "update_forward_is_old_pass", lambda config: False)
    separate, _ = run(tmp_path, *args, name="separate")
    assert len(passes) == 3
    assert untimed(metrics(reused)) == untimed(metrics(separate))
    assert metrics(reused)[0]["perf/rollout_time"] < metrics(reused)[0]["perf/step_time"]


def test_the_optimizer_is_adamw_with_its_fused_kernel_on_the_cpu(tmp_path):
    config = load_config(overrides=[*TINY, f"log.out_dir={tmp_path}", "train.lr=0.02", "train.weight_decay=0.1"])
    model, _ = load_policy(config.model, config.task, torch.device("cpu"))
    optimizer = loop.make_optimizer(model, config)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    assert optimizer.defaults["lr"] == 0.02 and optimizer.defaults["weight_decay"] == 0.1


def test_a_rollout_trimmed_to_some_rows_drops_the_columns_padded_in_all_of_them():
    # 2 prompt columns + 4 response columns; row 0: prompt [5, 6], response [7, 8, eos 2];
    # row 1: prompt [pad, 6], response [9, eos 2]; row 2: prompt [pad, 5], response [2].
    sequences = torch.tensor([[5, 6, 7, 8, 2, 0], [0, 6, 9, 2, 0, 0], [0, 5, 2, 0, 0, 0]])
    response_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    attention_mask = torch.cat([torch.tensor([[1, 1], [0, 1], [0, 1]]), response_mask], 1)
    rollout = Rollout(sequences, attention_mask, response_mask, ["", "", ""])
    kept, attention, length = rollout.trimmed(torch.tensor([1, 2]))
    assert length == 2 and torch.equal(kept, torch.tensor([[6, 9, 2], [5, 2, 0]]))
    assert torch.equal(attention, torch.tensor([[1, 1, 1], [1, 1, 0]]))
    kept, _, length = rollout.trimmed(torch.tensor([0, 2]))
    assert length == 3 and torch.equal(kept, sequences[[0, 2], :5])


def test_micro_batches_group_rows_by_response_length_and_keep_their_log_probs(tmp_path):
    config = load_config(overrides=[*TINY, f"log.out_dir={tmp_path}"])
    model, tokenizer = load_policy(config.model, config.task, torch.device("cpu"))
    prompts = [f"{a}+{b}=" for a in range(4) for b in (1, 5, 9)]
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, prompts, temperature=1.5, top_p=1.0, max_new_tokens=8)
    lengths = rollout.response_mask.sum(1)
    assert len(set(lengths.tolist())) > 1  # the test needs responses of several lengths
    rows = torch.arange(len(prompts))
    micro = loop.micro_batches(rollout, rows, 5)
    assert [len(m) for m in micro] == [5, 5, 2] and sorted(torch.cat(micro).tolist()) == rows.tolist()
    assert torch.equal(torch.cat([lengths[m] for m in micro]), lengths.sort(descending=True).values)
    assert loop.micro_batches(rollout, rows, 12) == (rows,)  # one micro-batch: the rows as they are
    with torch.no_grad():
        _, log_prob, _ = loop.policy_forward(model, rollout, micro[-1], 1.0)
        assert log_prob.shape == (2, int(lengths[micro[-1]].max()))
        bucketed = loop.forward_batched(model, rollout, 5, 1.0)
        whole = loop.forward_batched(model, rollout, 12, 1.0)
    mask = rollout.response_mask.bool()
    for got, expected in zip(bucketed, whole, strict=True):
        assert got.shape == expected.shape == mask.shape
        torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_an_update_in_bucketed_micro_batches_equals_one_in_a_single_micro_batch(tmp_path):
    # the same first step, once in micro-batches of 3 grouped by length, once in one of 16
    args = ("train.steps=1", "method.name=entropic", *ACTIVE["entropic"], "train.kl_coef=0.05")
    bucketed, _ = run(tmp_path, *args, "train.micro_batch_size=3", name="bucketed")
    whole, _ = run(tmp_path, *args, "train.micro_batch_size=16", name="whole")
    got, expected = untimed(metrics(bucketed))[0], untimed(metrics(whole))[0]
    assert got.keys() == expected.keys() and expected["optim/grad_norm"] > 0
    for ratio in ("entropic/weight_pos", "entropic/weight_neg"):
        del got[ratio], expected[ratio]  # means over each micro-batch's confident tokens: grouping-dependent
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_gradient_checkpointing_trains_the_same(tmp_path):
    # the same to rounding: without checkpointing a group's prompt runs once (models.response_logits)
    plain, _ = run(tmp_path, "train.steps=2", name="plain")
    checkpointed, _ = run(tmp_path, "train.steps=2", "train.gradient_checkpointing=true", name="checkpointed")
    expected = untimed(metrics(plain))
    assert any(r["optim/grad_norm"] > 0 for r in expected)
    for got, want in zip(untimed(metrics(checkpointed)), expected, strict=True):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_old_log_probs_match_the_sampling_distribution(tmp_path):
    config = load_config(overrides=[*TINY, f"log.out_dir={tmp_path}"])
    model, tokenizer = load_policy(config.model, config.task, torch.device("cpu"))
    torch.manual_seed(0)
    prompts = ["3+4=", "12+5=", "1+1="]  # different lengths: left padding
    rollout = generate(model, tokenizer, prompts, temperature=0.7, top_p=1.0, max_new_tokens=4)
    # re-run generation with the same seed, recording the sampling logits
    torch.manual_seed(0)
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    from transformers import GenerationConfig

    out = model.generate(
        **encoded,
        generation_config=GenerationConfig(
            do_sample=True,
            temperature=0.7,
            top_k=0,
            top_p=1.0,
            max_new_tokens=4,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        output_logits=True,
        return_dict_in_generate=True,
    )
    assert torch.equal(out.sequences, rollout.sequences)
    sampling = torch.log_softmax(torch.stack(out.logits, 1).float() / 0.7, -1)
    tokens = rollout.sequences[:, -rollout.response_mask.shape[1] :]
    expected = sampling.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        _, log_prob, _ = loop.policy_forward(model, rollout, torch.arange(len(rollout.sequences)), 0.7)
    mask = rollout.response_mask.bool()
    torch.testing.assert_close(log_prob[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    run_dir, _ = run(tmp_path, "train.steps=2", "method.name=grpo")
    from entropic_rl.trainer import checkpoint

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    config = load_config(run_dir / "config.yaml")
    model, tokenizer = load_policy(config.model, config.task, torch.device("cpu"))
    monkeypatch.setattr(model, "save_pretrained", broken_save)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(
            run_dir,
            3,
            model=model,
            tokenizer=tokenizer,
            optimizer=optimizer,
            scheduler=scheduler,
            state={},
            keep_last=2,
        )
    assert latest_checkpoint(run_dir).name == "step_000002"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000002"]


def test_cli_train_and_plot(tmp_path, capsys, saved_figures):
    out = tmp_path / "cli"
    assert main(["train", *TINY, "train.steps=2", f"log.out_dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert "config: preset embedded (" in printed  # the embedded model's method values, loaded visibly
    assert "method: entropic (target_entropy=0.3, threshold=0.8, gains=fixed, kp=10.0, ki=0.1, alpha_min" in printed
    assert (out / "config.yaml").read_text().startswith("# from: preset embedded (")
    assert load_config(out / "config.yaml").method.kp == 10.0
    assert main(["plot", str(out), str(out), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").is_file() and "figure:" in capsys.readouterr().out
    records = metrics(out)
    panels = saved_figures["p.png"].axes  # entropy, alpha, reward, accuracy; the run twice, 2 steps (no smoothing)
    for ax, key in zip(panels, ("entropy/mean", "entropic/alpha", "reward/mean", "reward/accuracy"), strict=True):
        assert [line.get_label() for line in ax.lines] == ["cli (entropic)"] * 2
        assert list(ax.lines[1].get_ydata()) == [r[key] for r in records]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rollout.group_size=1"], "rollout.group_size must be >= 2"),
        (["train.lr=fast"], "train.lr: expected float, got 'fast'"),
        (["method.kp=-1"], "method.kp must be a finite number >= 0"),
        (["method.name=grpo", "method.kp=1"], "method.kp: unknown field; method has name"),
        (["rollout.temprature=1"], "rollout.temprature is not a field; rollout has prompts_per_step"),
        (["rollout.sampler=vllm"], "rollout.sampler must be one of lean, generate, got 'vllm'"),
        (["rollout.cache=static"], "rollout.cache=static is the generate sampler's KV cache: set sampler=generate too"),
        (["train.clip_low=1.5"], r"train.clip_low must be <= 1 \(the ratio's lower bound"),
        (["task.difficulty=0"], "task.difficulty must be >= 1 for arithmetic, got 0"),
        (["task.name=countdown", "task.difficulty=1"], "task.difficulty must be >= 2 for countdown, got 1"),
    ],
)
def test_cli_train_bad_config_names_the_field(args, message, cli_error):
    cli_error(["train", *args], message)


def test_cli_train_malformed_data_file_names_file_and_line(tmp_path, cli_error):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=" "answer": "4"}\n')
    cli_error(
        ["train", "task.name=file", f"task.path={data}", f"log.out_dir={tmp_path / 'run'}"],
        r"train.jsonl:2: not valid JSON",
    )


def test_config_file_errors_name_the_file(tmp_path, cli_error):
    path = tmp_path / "c.yaml"
    path.write_text("rollout:\n  group_size: 1\n")
    cli_error(["train", "--config", str(path)], r"rollout.group_size must be >= 2.*c.yaml")


def test_existing_run_directory_is_not_overwritten(tmp_path):
    run(tmp_path, "train.steps=1", "method.name=grpo")
    with pytest.raises(ValueError, match="already holds a run; use --resume"):
        run(tmp_path, "train.steps=1", "method.name=grpo")


def test_every_shipped_config_loads():
    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)


def test_embedded_tokenizer_keeps_spaces_when_reloaded():
    config = load_config(overrides=TINY)
    _, tokenizer = load_policy(config.model, config.task, torch.device("cpu"))
    assert tokenizer("12 3=15:").input_ids == char_tokenizer()("12 3=15:").input_ids
    assert tokenizer.decode(tokenizer("12 3").input_ids, skip_special_tokens=True) == "12 3"


def test_the_warm_start_runs_on_one_thread_whatever_the_runs_count(tmp_path, monkeypatch):
    """The thread count changes float rounding: the cached warm start must not depend on which run built it."""
    import entropic_rl.models.embedded as embedded

    threads = []
    monkeypatch.setattr(embedded, "warm_start", lambda *args: threads.append(torch.get_num_threads()) or {})
    monkeypatch.setenv("ENTROPIC_RL_CACHE", str(tmp_path))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        embedded.warm_started_default(load_config(overrides=TINY).model, "arithmetic", 1)
        assert threads == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def tiny_llama(tokenizer):
    """A 2-layer Llama for the tokenizer, seeded: any local Hugging Face causal LM."""
    return seeded_llama(tokenizer, hidden=32, intermediate=64, layers=2, heads=2, kv_heads=1)


def test_any_local_hugging_face_model_with_a_chat_template_on_a_data_file(tmp_path):
    from entropic_rl.models import format_prompts

    tokenizer = char_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}={% endif %}"
    )
    model = tiny_llama(tokenizer)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"q": f"{a}+{a}", "a": str(2 * a)}) + "\n" for a in range(6)))

    run_dir, config = run(
        tmp_path,
        f"model.path={tmp_path / 'model'}",
        "task.name=file",
        f"task.path={data}",
        "task.prompt_field=q",
        "task.answer_field=a",
        "train.steps=2",
        "method.name=entropic",
    )
    assert [r["step"] for r in metrics(run_dir)] == [1, 2]
    _, loaded = load_policy(config.model, config.task, torch.device("cpu"))
    ids = format_prompts(loaded, ["1+1"], "auto")["input_ids"][0].tolist()
    assert loaded.decode(ids, skip_special_tokens=True) == "1+1="  # the chat template was applied


def test_static_cache_samples_what_the_dynamic_cache_samples(tmp_path):
    """rollout.cache=static pads prompts to a multiple of 32 for the fixed-size cache and strips that
    padding again: same responses, same sequences, same log-probs."""
    config = load_config(overrides=[*TINY, f"log.out_dir={tmp_path}"])
    model, tokenizer = load_policy(config.model, config.task, torch.device("cpu"))
    prompts = ["3+4=", "12+5=", "1+1="]
    rollouts = []
    for cache in ("dynamic", "static"):
        torch.manual_seed(0)
        rollouts.append(
            generate(
                model, tokenizer, prompts, temperature=1.0, top_p=1.0, max_new_tokens=6, sampler="generate", cache=cache
            )
        )
    dynamic, static = rollouts
    assert static.responses == dynamic.responses
    assert torch.equal(static.sequences, dynamic.sequences)
    assert torch.equal(static.attention_mask, dynamic.attention_mask)
    assert static.attention_mask[:, 0].any()  # no column of padding alone


def test_static_cache_and_bfloat16_autocast_train(tmp_path):
    run_dir, _ = run(
        tmp_path, "train.steps=2", "rollout.sampler=generate", "rollout.cache=static", "model.autocast=bfloat16"
    )
    records = metrics(run_dir)
    assert len(records) == 2 and all(math.isfinite(v) for r in records for v in r.values())
    config = load_config(overrides=TINY)
    model, _ = load_policy(config.model, config.task, torch.device("cpu"), folder=latest_checkpoint(run_dir))
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # autocast leaves the weights in float32


def test_autocast_computes_log_probs_and_entropies_in_float32(tmp_path):
    config = load_config(overrides=[*TINY, f"log.out_dir={tmp_path}"])
    model, tokenizer = load_policy(config.model, config.task, torch.device("cpu"))
    rollout = generate(model, tokenizer, ["3+4="], temperature=1.0, top_p=1.0, max_new_tokens=4)
    with autocast("bfloat16", torch.device("cpu")):
        _, log_prob, entropy = loop.policy_forward(model, rollout, torch.tensor([0]), 1.0)
    assert log_prob.dtype == entropy.dtype == torch.float32
    with torch.no_grad():
        _, exact, _ = loop.policy_forward(model, rollout, torch.tensor([0]), 1.0)
    torch.testing.assert_close(log_prob.detach(), exact, atol=0.1, rtol=0.05)  # bfloat16 products: close, not equal


def test_non_finite_logits_are_noted_without_stopping_the_sampler():
    reject = RejectNonFinite()
    scores = torch.tensor([[0.5, -math.inf, 1.0], [0.0, math.nan, 1.0], [math.inf, 0.0, 0.0]])
    out = reject(None, scores)
    assert torch.equal(out[0], scores[0])  # -inf (a masked token) passes
    assert torch.equal(out[1:], torch.zeros(2, 3))  # rows the sampler could not use become uniform
    with pytest.raises(FloatingPointError, match="non-finite logits while sampling"):
        reject.check()
    clean = RejectNonFinite()
    clean(None, scores[:1])
    clean.check()


def no_reward(response, example):
    return 0.0


def test_auto_gains_freeze_kappa_in_the_loop_when_no_sequence_has_an_advantage(tmp_path):
    run_dir, config = run(
        tmp_path, "train.steps=24", "task.reward=test_train:no_reward", "method.gains=auto", "method.target_entropy=0.6"
    )
    records = metrics(run_dir)
    assert all(r["reward/mixed"] == 0.0 for r in records)
    assert [r["entropic/kappa"] for r in records] == [3.0] * 24  # frozen: no window had a gradient to act through
    unaware = method_class("entropic")(config.method).controller
    for r in records:  # the same windows without their share of moving sequences
        unaware.update(r["entropic/entropy"])
    assert unaware.kappa != 3.0  # would have adapted


def test_auto_gains_in_the_loop_follow_the_controller_fed_the_logged_windows(tmp_path):
    run_dir, config = run(tmp_path, "train.steps=26", "train.lr=1e-4", "method.gains=auto", "method.target_entropy=0.6")
    records = metrics(run_dir)
    replay = method_class("entropic")(config.method).controller
    expected = []
    for r in records:  # one window a step: its entropy and its share of sequences with an advantage
        replay.update(r["entropic/entropy"], 1.0, r["reward/mixed"])
        expected.append(replay.kappa)
    assert [r["entropic/kappa"] for r in records] == expected
    assert expected[:20] == [3.0] * 20 and expected[-1] != 3.0  # adapts from window 21 on, not before

import json
from pathlib import Path

import pytest

from entropic_rl.cli import main
from entropic_rl.evaluation import markdown_table
from entropic_rl.tasks import ArithmeticTask, FileTask
from entropic_rl.trainer import load_config, train
from test_train import TINY, metrics


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def arithmetic_file(path, start, count):
    examples = ArithmeticTask(digits=1).examples(start, count)
    return write_jsonl(path, [{"prompt": e.prompt, "answer": e.answer} for e in examples])


def test_eval_end_to_end_on_the_embedded_model(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", *TINY, "train.steps=2", "train.lr=1e-4", f"log.out_dir={run_dir}"]) == 0
    first = arithmetic_file(tmp_path / "first.jsonl", 10**6, 12)
    second = arithmetic_file(tmp_path / "second.jsonl", 2 * 10**6, 5)
    out = tmp_path / "eval"
    args = ["eval", f"model={run_dir}", f"data=[{first},{second}]", "sampling.n=4"]
    assert main([*args, "sampling.max_new_tokens=8", f"out={out}"]) == 0

    report = json.loads((out / "results.json").read_text())
    assert report["model"].endswith("step_000002")  # the run's latest checkpoint
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 + 5
    for name, problems in (("first", 12), ("second", 5)):
        result = report["results"][name]
        rows = [s for s in samples if s["data"] == name]
        assert result["problems"] == problems and result["n"] == 4
        assert sum(result["checks"].values()) == 4 * problems
        correct = [sum(score >= 1 for score in s["scores"]) for s in rows]
        assert result["avg@4"] == pytest.approx(sum(c / 4 for c in correct) / problems)
        assert result["pass@4"] == pytest.approx(sum(c > 0 for c in correct) / problems)
        assert list(result["pass@k"]) == ["1", "2", "4"]  # JSON keys
        assert result["pass@k"]["1"] == pytest.approx(result["avg@4"])
    assert report["results"]["first"]["avg@4"] > 0  # the warm-started model answers some
    assert report["mean"]["avg@4"] == pytest.approx(
        (report["results"]["first"]["avg@4"] + report["results"]["second"]["avg@4"]) / 2
    )
    assert "| mean |" in (out / "results.md").read_text()

    hung = tmp_path / "hung"  # a module:function reward past its time limit scores 0 and is counted
    args = ["eval", f"model={run_dir}", f"data={second}", "limit=1", "sampling.n=2", "sampling.max_new_tokens=4"]
    assert main([*args, "reward=test_reliability:hangs", "reward_timeout=0.3", f"out={hung}"]) == 0
    result = json.loads((hung / "results.json").read_text())["results"]["second"]
    assert result["checks"]["timeout"] == 2 and result["avg@2"] == 0


def test_eval_errors_name_the_problem(tmp_path, cli_error):
    data = arithmetic_file(tmp_path / "a.jsonl", 0, 2)
    cli_error(["eval", f"model={tmp_path / 'missing'}", f"data={data}"], r"model: .* is not a folder")
    cli_error(["eval", f"data={data}"], r"model: required")
    cli_error(["eval", f"model={tmp_path}", f"data={data}", "sampling.n=0"], r"sampling.n must be >= 1")
    cli_error(["eval", f"model={tmp_path}", f"data={data}", "reward_timeout=0"], r"reward_timeout must be > 0")
    cli_error(["eval", f"model={tmp_path}", f"data={data}", "reward=nope"], r"(?<!task\.)reward: unknown reward 'nope'")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1:", "answer": "1+1=2"}\n{"prompt": oops}\n')
    cli_error(["eval", f"model={tmp_path}", f"data={bad}"], r"bad\.jsonl:2: not valid JSON")


def test_markdown_table_has_a_row_per_data_set_and_the_mean():
    a = {"problems": 2, "n": 2, "avg@2": 0.5, "pass@2": 1.0, "pass@k": {1: 0.5, 2: 1.0}, "checks": {"error": 1}}
    b = {**a, "avg@2": 0.25, "checks": {"error": 1, "timeout": 0}}
    lines = markdown_table({"a": {**a, "seconds": 1.0}, "b": {**b, "seconds": 2.0}}).splitlines()
    assert lines[0] == "| data | problems | avg@2 | pass@1 | pass@2 | errors | time-outs |"
    assert lines[2] == "| a | 2 | 50.0% | 50.0% | 100.0% | 1 | 0 |"
    assert lines[4] == "| mean | 4 | 37.5% | 50.0% | 100.0% | 2 | 0 |"


@pytest.mark.parametrize(
    "fields, prompt, reward",
    [
        ({"question": "How many?", "answer": "It is 3.\n#### 3"}, "How many?", "gsm8k"),
        ({"problem": "Find x.", "answer": "\\frac{1}{2}"}, "Find x.", "math"),
        ({"prompt": "1+1:", "answer": "1+1=2"}, "1+1:", "exact"),
    ],
)
def test_file_layouts_choose_prompt_field_reward_and_template(tmp_path, fields, prompt, reward):
    task = FileTask(str(write_jsonl(tmp_path / "d.jsonl", [fields])))
    assert task.default_reward == reward
    # template auto asks for the answer the reward reads
    suffix = {"gsm8k": "\nAnswer with the final number after ####.", "math": "\\boxed{}.", "exact": ""}[reward]
    assert task.examples_list[0].prompt.startswith(prompt) and task.examples_list[0].prompt.endswith(suffix)
    assert FileTask(str(tmp_path / "d.jsonl"), template="plain").examples_list[0].prompt == prompt
    boxed = FileTask(str(tmp_path / "d.jsonl"), template="boxed").examples_list[0].prompt
    assert boxed.startswith(prompt + "\n") and "\\boxed{}" in boxed
    with pytest.raises(ValueError, match="template must be one of"):
        FileTask(str(tmp_path / "d.jsonl"), template="no placeholder")


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the team's data beside the clone


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA}: not here (the team's data beside the clone)")
def test_shared_data_files_load_with_their_layouts():
    for name, count, reward in (
        ("gsm8k_test", 1319, "gsm8k"),
        ("math500_test", 500, "math"),
        ("aime2024_test", 30, "math"),
    ):
        task = FileTask(str(SHARED_DATA / f"{name}.jsonl"))
        assert len(task.examples_list) == count and task.default_reward == reward


def test_validation_during_training_is_logged_and_leaves_training_unchanged(tmp_path):
    base = [*TINY, "train.steps=4"]
    plain = train(load_config(overrides=[*base, f"log.out_dir={tmp_path / 'plain'}"]))
    validated = train(
        load_config(
            overrides=[*base, "eval.every=2", "eval.problems=6", "eval.n=2", f"log.out_dir={tmp_path / 'validated'}"]
        )
    )
    with_eval, without = metrics(validated), metrics(plain)
    assert [("eval/arithmetic/avg@2" in r) for r in with_eval] == [False, True, False, True]
    assert all(0 <= r["eval/arithmetic/avg@2"] <= r["eval/arithmetic/pass@2"] <= 1 for r in with_eval[1::2])
    for a, b in zip(with_eval, without, strict=True):  # the forked RNG: same training run
        assert a["entropy/mean"] == b["entropy/mean"] and a["reward/accuracy"] == b["reward/accuracy"]


def test_validation_on_files(tmp_path):
    data = arithmetic_file(tmp_path / "held.jsonl", 5 * 10**6, 4)
    config = load_config(
        overrides=[*TINY, "train.steps=1", "eval.every=1", f"eval.data={data}", f"log.out_dir={tmp_path / 'r'}"]
    )
    assert "eval/held/avg@4" in metrics(train(config))[0]
    with pytest.raises(ValueError, match=r"eval\.data: give the files"):
        train(load_config(overrides=["task.name=file", f"task.path={data}", "model.path=x", "eval.every=1"]))

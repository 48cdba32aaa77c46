import json

import pytest

from entropic_rl.tasks import (
    ArithmeticTask,
    CountdownTask,
    Example,
    FileTask,
    UnsafeExpression,
    WorkedAdditionTask,
    build_task,
    evaluate,
)
from entropic_rl.tasks.checkers import Check
from entropic_rl.tasks.rewards import UserReward, countdown, exact, get_reward
from entropic_rl.trainer.config import load_config


def test_examples_are_a_deterministic_function_of_position():
    task = ArithmeticTask(digits=3, seed=7)
    assert task.examples(10, 5) == task.examples(10, 5)
    assert task.examples(10, 5)[2] == task.examples(12, 1)[0]
    assert task.examples(0, 5) != ArithmeticTask(digits=3, seed=8).examples(0, 5)


def test_arithmetic_answers_are_right_and_demonstrations_only_add_spaces():
    examples = ArithmeticTask(digits=2, ops="+-*").examples(0, 200)
    for example in examples:
        left, right = example.answer.split("=")
        assert example.prompt == left + ":"
        assert evaluate(left)[0] == int(right)
        assert example.demonstration.replace(" ", "") == example.answer
        assert exact(example.demonstration, example) == 1.0
    spaces = sum(e.demonstration.count(" ") for e in examples)
    gaps = sum(len(e.answer) - 1 for e in examples)
    assert 0.02 < spaces / gaps < 0.1  # SPACE_PROBABILITY = 0.05


@pytest.mark.parametrize(
    "text",
    [
        '__import__("os").system("true")',
        "(1).__class__",
        "2**100",
        "abs(-1)",
        "x",
        "1 if 1 else 2",
        "[1]",
        "1e9",
        "'a'",
        "1;2",
        "9" * 300,
        "99999999*99999999",
    ],
)
def test_safe_eval_rejects_everything_but_arithmetic(text):
    with pytest.raises(UnsafeExpression):
        evaluate(text)


def test_safe_eval_is_exact_and_reports_numbers():
    value, numbers = evaluate("(7 - 3) / 8 * -2")
    assert value == -1 and numbers == [7, 3, 8, 2]
    with pytest.raises(UnsafeExpression, match="division by zero"):
        evaluate("1/(2-2)")


def test_countdown_puzzles_are_solvable_and_rewards_check_the_rules():
    for example in CountdownTask(n_numbers=4, seed=3).examples(0, 30):
        assert countdown(example.answer, example) == 1.0
    example = Example("3 5 7=22:", "3*5+7", {"numbers": [3, 5, 7], "target": 22})
    assert countdown("7+3*5", example) == 1.0
    assert countdown("3*5+7+0", example) == 0.0  # 0 is not given
    assert countdown("3*5+7*1", example) == 0.0
    assert countdown("5*5-3", example) == 0.0  # 5 used twice
    assert countdown("22", example) == 0.0
    assert countdown("__import__('os')", example) == 0.0


def test_exact_reward_ignores_white_space():
    assert exact(" 12 +34=4 6\n", Example("12+34:", "12+34=46")) == 1.0
    assert exact("12+34=46", Example("12+34:", "12+34=47")) == 0.0
    assert exact("12+34=46", Example("x", "46")) == 0.0


def test_reward_by_import_path_and_errors():
    by_path = get_reward("entropic_rl.tasks.rewards:exact")  # run in its worker, under a time limit
    assert isinstance(by_path, UserReward) and by_path(" 2", Example("1+1=", "2")) == Check(1.0, "ok")
    with pytest.raises(ValueError, match=r"task\.reward: unknown reward 'nope'"):
        get_reward("nope")
    with pytest.raises(ValueError, match="cannot import"):
        get_reward("entropic_rl.tasks.rewards:missing")


def test_file_task_with_field_mapping_and_epochs(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"q": f"{i}+1=", "a": str(i + 1), "id": i}) + "\n" for i in range(5)))
    task = FileTask(str(path), prompt_field="q", answer_field="a", seed=0)
    first_epoch = task.examples(0, 5)
    assert sorted(e.answer for e in first_epoch) == ["1", "2", "3", "4", "5"]
    assert first_epoch[0].meta == {"id": int(first_epoch[0].answer) - 1}
    assert sorted(e.answer for e in task.examples(5, 5)) == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "1", "answer": "2"}\n\n{"prompt": "3", "answer": \n', r"data.jsonl:3: not valid JSON"),
        ('{"prompt": "1", "answer": "2"}\n{"prompt": "3"}\n', r"data.jsonl:2: missing field 'answer'"),
        ('["a", "b"]\n', r"data.jsonl:1: expected a JSON object"),
        ("", r"data.jsonl: no examples"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        FileTask(str(path))


def test_parquet_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"question": ["1+1="], "answer": ["2"]}), path)
    assert FileTask(str(path), prompt_field="question").examples(0, 1)[0].answer == "2"


def test_worked_addition_varies_the_phrasing_and_checks_only_the_sum():
    examples = WorkedAdditionTask(digits=3, seed=0).examples(0, 400)
    assert examples == WorkedAdditionTask(digits=3, seed=0).examples(0, 400)  # a function of the position
    reward = get_reward(WorkedAdditionTask.default_reward)
    texts = [e.meta["demonstration"] for e in examples]
    assert all(20 <= len(t) <= 64 for t in texts)  # characters = tokens of the embedded tokenizer
    assert all(reward(t, e).score == 1.0 for t, e in zip(texts, examples, strict=True))
    assert all(set(t) <= set("0123456789+-*/()=: " + WorkedAdditionTask.characters) for t in texts)
    # every phrasing occurs, the common one most
    for common, rare in ((" carry 1", " c1"), (", so ", " total "), (", ", "; ")):
        assert sum(common in t for t in texts) > sum(rare in t for t in texts) > 0
    e = examples[0]
    assert reward(f"1+1=2, so {int(e.answer) + 1}", e).score == 0.0  # the final number decides
    assert reward(f"nonsense, so {e.answer}", e).score == 1.0
    assert e.prompt == f"{e.prompt[:-1]}:" and eval_sum(e.prompt) == int(e.answer)


def eval_sum(prompt: str) -> int:
    a, b = prompt.rstrip(":").split("+")
    return int(a) + int(b)


def test_a_template_wraps_a_synthetic_task_for_a_model_given_by_path():
    config = load_config(None, ["task.name=worked", "task.difficulty=1", "task.template=hashes", "model.path=x"])
    task = build_task(config.task, 0)
    plain = build_task(load_config(None, ["task.name=worked", "task.difficulty=1"]).task, 0)
    (templated,), (bare,) = task.examples(5, 1), plain.examples(5, 1)
    assert templated.prompt == bare.prompt + "\nAnswer with the final number after ####."
    assert (templated.answer, templated.meta) == (bare.answer, bare.meta) and task.default_reward == "gsm8k"
    with pytest.raises(ValueError, match=r"task\.template: the embedded model's tokenizer knows only"):
        load_config(None, ["task.name=worked", "task.template=hashes"])

"""Answer extraction, GSM8K number checks and math-verify checks, including their error and time-out paths."""

import json
import threading
import time
from pathlib import Path

import pytest

from entropic_rl.tasks import checkers
from entropic_rl.tasks.checkers import Check, check_math, check_number, extract_boxed, extract_final_number
from entropic_rl.tasks.worker import START_METHOD

math_verify = pytest.importorskip("math_verify")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no data sets at {DATA}")

# The error and time-out tests patch math-verify in this process; only a forked worker sees the patch.
needs_fork = pytest.mark.skipif(START_METHOD != "fork", reason="patches reach the worker only when forked")


# ----------------------------------------------------------------------------------------------- extract_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{5}$.", "5"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{\sqrt{3}}", r"\sqrt{3}"),
        (r"\boxed{\boxed{7}} and then no more", r"\boxed{7}"),  # the last top-level box, not the inner one
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are content
        (r"\boxed{a \\ b}", r"a \\ b"),
        (r"\boxed {x^{2}}", "x^{2}"),
        (r"\fbox{C}", "C"),
        (r"\boxed{1} \fbox{2}", "2"),
        (r"$\boxed 5$", "5"),
        (r"the answer is \boxed 42 apples", "42"),
        (r"\boxed{}", ""),
        (r"no box here: 5", None),
        (r"\boxed{\frac{1}{2}", None),  # unbalanced: truncated generation
        (r"\boxed{1} then \boxed{2", None),  # the last box never closes: no final answer
        (r"\boxed", None),
        (r"\boxedanswer{3}", None),  # another macro
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


# ----------------------------------------------------------------------------------------- extract_final_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
        ("#### 1,000", "1000"),
        ("#### $1,234.50 in total", "1234.50"),
        ("The population is 1,234,567.", "1234567"),
        ("It costs $5.", "5"),
        ("The temperature drops to -12 degrees.", "-12"),
        ("So 10-5=5, and the change is -3.5", "-3.5"),
        ("10-5", "5"),  # a hyphen after a number is a subtraction, not a sign
        ("the ratio is .75", ".75"),
        ("that gives 72.00", "72.00"),
        ("First 12 then 7.", "7"),
        ("pick 1,2,3", "3"),  # a list, not thousands
        (r"The answer is $\boxed{1{,}234}$ because 5 - 3 = 2.", "1234"),  # the box beats a later number
        ("no digits at all", None),
        ("####", None),
    ],
)
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected


# ------------------------------------------------------------------------------------------------ check_number


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        ("The answer is 72.", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", Check(1.0, "ok")),
        ("The answer is 72.0", "72", Check(1.0, "ok")),
        ("It is $1,000.00", "#### 1,000", Check(1.0, "ok")),
        ("The answer is -4", "-4", Check(1.0, "ok")),
        ("The answer is 71", "72", Check(0.0, "ok")),
        ("I do not know", "72", Check(0.0, "no_answer")),
        ("The answer is 72", "no number", Check(0.0, "error")),
        ("The answer is " + "9" * 5000, "72", Check(0.0, "error")),  # past Python's int-conversion limit
    ],
)
def test_check_number(response, gold, expected):
    assert check_number(response, gold) == expected


@needs_data
def test_gsm8k_rows_check_against_their_own_final_number():
    rows = [json.loads(line) for line in (DATA / "gsm8k_test.jsonl").read_text().splitlines()[::53]]
    for row in rows:
        final = row["answer"].rsplit("####", 1)[1].strip()
        assert check_number(f"Let me think. So the answer is {final}.", row["answer"]) == Check(1.0, "ok"), final
        assert check_number(f"So the answer is {final}1.", row["answer"]).score == 0.0


# -------------------------------------------------------------------------------------------------- check_math


@pytest.fixture
def fresh_worker():
    """A worker forked after the test's patches, and none left behind that carries them."""
    checkers.shutdown()
    yield
    checkers.shutdown()


@pytest.mark.parametrize(
    ("response", "gold", "score"),
    [
        (r"so $\boxed{\frac{3}{4}}$", r"\frac{3}{4}", 1.0),
        (r"so $\boxed{0.75}$", r"\frac{3}{4}", 1.0),
        (r"so $\boxed{\dfrac34}$", r"\frac{3}{4}", 1.0),
        (r"so $\boxed{0.7}$", r"\frac{3}{4}", 0.0),
        (r"$\boxed{\left( 3, \frac{\pi}{2} \right)}$", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
        (r"$\boxed{(3,\frac{\pi}{2})}$", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
        (r"$\boxed{\left( 3, \frac{\pi}{3} \right)}$", r"\left( 3, \frac{\pi}{2} \right)", 0.0),
        (r"\boxed{1} no wait \boxed{2}", "2", 1.0),
        (r"\boxed{x^2+1}", r"1+x^2", 1.0),
        (r"\boxed{72}", r"The total is $\boxed{72}$.", 1.0),  # a whole solution as gold
    ],
)
def test_check_math(response, gold, score):
    assert check_math(response, gold) == Check(score, "ok")


@pytest.mark.parametrize("response", ["the answer is 5", r"\boxed{}", r"\boxed{  }", r"\boxed{\frac{1}{2}"])
def test_check_math_without_an_answer(response):
    assert check_math(response, "5") == Check(0.0, "no_answer")


@needs_data
def test_math500_rows_check_against_themselves():
    rows = [json.loads(line) for line in (DATA / "math500_test.jsonl").read_text().splitlines()[::10]]
    for row in rows:
        assert check_math(rf"Therefore the answer is $\boxed{{{row['answer']}}}$.", row["answer"]) == Check(1.0, "ok")
    other = rows[1]["answer"]  # "1,-2": not the answer of the first row
    assert check_math(rf"\boxed{{{other}}}", rows[0]["answer"]) == Check(0.0, "ok")


@needs_fork
@pytest.mark.parametrize("name", ["parse", "verify"])
def test_a_checker_that_raises_scores_zero_with_status_error(monkeypatch, fresh_worker, name):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(math_verify, name, broken)
    assert check_math(r"\boxed{5}", "5") == Check(0.0, "error")


@needs_fork
def test_a_checker_past_its_limit_scores_zero_with_status_timeout(monkeypatch, fresh_worker):
    monkeypatch.setattr(math_verify, "verify", lambda *args, **kwargs: time.sleep(30))
    assert check_math(r"\boxed{5}", "5", timeout_s=0.3) == Check(0.0, "timeout")  # not the 30 s verify's result
    monkeypatch.undo()
    checkers.shutdown()  # the next worker is forked without the patch
    assert check_math(r"\boxed{5}", "5") == Check(1.0, "ok")


def test_an_answer_that_hangs_sympy_in_c_times_out_from_any_thread():
    """10^{10^{10}} makes sympy build a huge integer inside one C call: no signal or thread could stop it."""
    results = {}

    def run(key):
        results[key] = check_math(r"\boxed{10^{10^{10}}}", "3", timeout_s=0.5)

    run("main")
    worker_thread = threading.Thread(target=run, args=("thread",))
    worker_thread.start()
    worker_thread.join()
    assert results == {"main": Check(0.0, "timeout"), "thread": Check(0.0, "timeout")}
    assert check_math(r"\boxed{3}", "3") == Check(1.0, "ok")  # a new worker took over


def test_threads_share_the_worker_safely():
    golds = [str(i) for i in range(40)]
    results = [None] * len(golds)

    def run(i):
        results[i] = check_math(rf"\boxed{{{i if i % 2 else i + 1}}}", golds[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(golds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [Check(float(i % 2), "ok") for i in range(len(golds))]


def test_bad_timeout_is_a_programming_error():
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        check_math(r"\boxed{1}", "1", timeout_s=0)


@pytest.mark.parametrize(
    ("response", "check", "scores"),  # the score against the gold 3, then against the gold 4
    [
        (r"\boxed{3, 4}", check_math, (0.0, 0.0)),
        (r"\boxed{3 \text{ or } 4}", check_math, (0.0, 0.0)),
        (r"\boxed{3} or \boxed{4}", check_math, (0.0, 1.0)),  # the last box is the answer
        ("#### 3\n#### 4", check_number, (0.0, 1.0)),  # the last marker's number
        ("#### 3 #### 4", check_number, (0.0, 1.0)),
        ("#### 3 or 4", check_number, (1.0, 0.0)),  # the first number after the marker
    ],
)
def test_an_answer_that_hedges_between_two_numbers_scores_for_one_at_most(response, check, scores):
    assert (check(response, "3").score, check(response, "4").score) == scores

"""Verifiable tasks (synthetic arithmetic and Countdown, local JSONL/Parquet files), their rewards
and the answer checkers behind them."""

from entropic_rl.tasks.config import TaskConfig, build_task
from entropic_rl.tasks.datasets import TEMPLATES, FileTask, resolve_template
from entropic_rl.tasks.example import Example
from entropic_rl.tasks.rewards import REWARDS, RewardFn, get_reward, score_responses
from entropic_rl.tasks.safe_eval import UnsafeExpression, evaluate
from entropic_rl.tasks.synthetic import ArithmeticTask, CountdownTask, WorkedAdditionTask

__all__ = [
    "REWARDS",
    "TEMPLATES",
    "ArithmeticTask",
    "CountdownTask",
    "Example",
    "FileTask",
    "RewardFn",
    "TaskConfig",
    "UnsafeExpression",
    "WorkedAdditionTask",
    "build_task",
    "evaluate",
    "get_reward",
    "resolve_template",
    "score_responses",
]

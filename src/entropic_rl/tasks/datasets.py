"""Problems from local JSONL or Parquet files (GSM8K, MATH-500, AIME or your own), with prompt
templates."""

from __future__ import annotations

import json
from pathlib import Path

from entropic_rl.tasks.example import Example, position_rng

PROMPT_FIELDS = ("prompt", "question", "problem")  # looked for, in this order, when none is given
TEMPLATES = {
    "plain": "{prompt}",
    "boxed": "{prompt}\nPlease reason step by step, and put your final answer within \\boxed{}.",
    "hashes": "{prompt}\nAnswer with the final number after ####.",
}
LAYOUT_TEMPLATES = {"gsm8k": "hashes", "math": "boxed", "exact": "plain"}  # template auto, by the file's reward


def resolve_template(template: str) -> str:
    """A template by name (``plain``, ``boxed``, ``hashes``; ``auto``: chosen by the file's layout)
    or a string containing ``{prompt}``."""
    if template == "auto":
        return template
    template = TEMPLATES.get(template, template)
    if "{prompt}" not in template:
        raise ValueError(
            f"template must be one of {sorted([*TEMPLATES, 'auto'])} or contain {{prompt}}, got {template!r}"
        )
    return template


class FileTask:
    """Examples from a local JSONL or Parquet file, with configurable field names.

    With ``prompt_field=None`` the first of ``prompt``, ``question``, ``problem`` present is used.
    The default reward follows the file's layout: ``gsm8k`` when answers end in ``#### <number>``
    (GSM8K), ``math`` when prompts are in ``problem`` (MATH-500, AIME), else ``exact``.
    ``template`` wraps each prompt (see ``TEMPLATES``); a chat template, if any, comes after.
    ``auto`` asks for the answer the layout's reward reads: ``hashes`` for GSM8K, ``boxed`` for
    MATH-500 and AIME, ``plain`` otherwise.
    """

    def __init__(
        self,
        path: str,
        prompt_field: str | None = None,
        answer_field: str = "answer",
        seed: int = 0,
        template: str = "auto",
        limit: int | None = None,
    ) -> None:
        self.path = Path(path)
        template = resolve_template(template)
        rows = self._read(self.path)[:limit]
        if not rows:
            raise ValueError(f"{self.path}: no examples")
        if prompt_field is None:
            prompt_field = next((f for f in PROMPT_FIELDS if f in rows[0][1]), PROMPT_FIELDS[0])
        for line, row in rows:
            for name in (prompt_field, answer_field):
                if name not in row:
                    raise ValueError(f"{self.path}:{line}: missing field {name!r} (fields: {sorted(row)})")
        if all("####" in str(row[answer_field]) for _, row in rows):
            self.default_reward = "gsm8k"
        elif prompt_field == "problem":
            self.default_reward = "math"
        else:
            self.default_reward = "exact"
        if template == "auto":
            template = TEMPLATES[LAYOUT_TEMPLATES[self.default_reward]]
        self.examples_list = []
        for _, row in rows:
            meta = {k: v for k, v in row.items() if k not in (prompt_field, answer_field)}
            prompt = template.replace("{prompt}", str(row[prompt_field]))
            self.examples_list.append(Example(prompt, str(row[answer_field]), meta))
        self.seed = seed
        self._epoch, self._order = -1, []

    @staticmethod
    def _read(path: Path) -> list[tuple[int, dict]]:
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        if path.suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
            return [(i + 1, row) for i, row in enumerate(pq.read_table(path).to_pylist())]
        if path.suffix not in (".jsonl", ".json"):
            raise ValueError(f"{path}: expected a .jsonl or .parquet file")
        rows = []
        with path.open("rb") as f:
            for line_number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ValueError(f"{path}:{line_number}: not UTF-8 (byte {exc.start + 1} of the line)") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_number}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
                rows.append((line_number, row))
        return rows

    def examples(self, start: int, count: int) -> list[Example]:
        """Each epoch visits every example once, in an order shuffled per epoch."""
        n = len(self.examples_list)
        out = []
        for position in range(start, start + count):
            epoch, index = divmod(position, n)
            if epoch != self._epoch:
                self._epoch, self._order = epoch, list(range(n))
                position_rng(self.seed, epoch).shuffle(self._order)
            out.append(self.examples_list[self._order[index]])
        return out

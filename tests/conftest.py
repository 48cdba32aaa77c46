import re
from pathlib import Path

import pytest
from hypothesis import settings

from entropic_rl.cli import main

# No Hypothesis deadline anywhere: an example's time depends on how busy the machine is, not on the code.
settings.register_profile("entropic-rl", deadline=None)
settings.load_profile("entropic-rl")


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory):
    """Warm-started embedded models go to a per-session cache, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ENTROPIC_RL_CACHE", str(tmp_path_factory.mktemp("entropic-rl-cache")))
    yield
    mp.undo()


@pytest.fixture
def cli_error(capsys):
    """``cli_error(args, pattern)``: the command rejects bad input with exit code 2 and one line on
    stderr matching ``pattern``, no traceback; returns that line."""

    def run(args: list[str], pattern: str) -> str:
        capsys.readouterr()
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert re.search(pattern, err), err
        return err

    return run


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures written during the test, by file name, to check what they plot (still saved)."""
    from matplotlib.figure import Figure

    figures, save = {}, Figure.savefig

    def recording(self, path, *args, **kwargs):
        figures[Path(path).name] = self
        return save(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return figures

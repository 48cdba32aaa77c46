import pytest


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory):
    """Warm-started embedded models go to a per-session cache, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ENTROPIC_RL_CACHE", str(tmp_path_factory.mktemp("entropic-rl-cache")))
    yield
    mp.undo()

"""The package's folders are DESIGN.md's layers and imports only point downwards."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "entropic_rl"
# Bottom to top; a module may import its own layer and the ones below.
LAYERS = ["util", "core", "methods", "simulator", "tasks", "models", "evaluation", "trainer", "integrations", "cli"]


def layer_of(module: str) -> str:
    return module.split(".")[1]


def imports(path: Path) -> set[str]:
    """Every entropic_rl module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("entropic_rl."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("entropic_rl.")}
    return found


def test_every_module_sits_in_a_layer_folder():
    top_level = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "cli.py"))
    assert top_level == []
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(
        set(LAYERS) - {"cli"}
    )


def test_imports_only_point_downwards():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "__init__.py":
            continue  # the package root re-exports the core
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        rank = LAYERS.index(layer_of(module))
        upward += [f"{module} -> {target}" for target in imports(path) if LAYERS.index(layer_of(target)) > rank]
    assert upward == []


def test_one_atomic_write_helper_at_the_bottom():
    renames = ("os.replace(", ".rename(", "mkdtemp(")
    writers = [
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if any(r in p.read_text() for r in renames)
    ]
    assert writers == ["util/files.py"]
    assert imports(PACKAGE / "util" / "files.py") == set()

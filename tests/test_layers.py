"""The layout's one rule: imports point down. sam/ never imports prompts/ or the app, and
each layer of sam/ imports only itself and the layers below it; sam/modeling/ (the plain
model) imports nothing of the project outside itself."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the lower layers of sam/ and what each may import besides itself (never "sam" itself, whose
# __init__ imports every layer)
LOWER_LAYERS = {
    "sam.modeling": set(),
    "sam.fast": {"sam.modeling"},
    "sam.io": set(),
    "sam.weights": {"sam.modeling", "sam.fast"},
}


def project_imports(path: Path, root: Path = ROOT) -> set[str]:
    """The project modules (sam..., prompts..., app) a file imports, as dotted names: the
    module of each ``from X import Y`` and ``X.Y`` (Y may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("sam", "prompts", "app")}


def layer_of(module: str) -> str:
    """ "sam.fast.mlp" -> "sam.fast"; "sam" -> "sam"; "prompts.clicks" -> "prompts"."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "sam" else parts[0]


def violations(folder: Path, allowed: Callable[[str], bool], root: Path = ROOT) -> list[str]:
    return [
        f"{path.relative_to(root)} imports {module}"
        for path in sorted(folder.rglob("*.py"))
        for module in sorted(project_imports(path, root))
        if not allowed(module)
    ]


def test_sam_never_imports_prompts_or_the_app():
    assert violations(ROOT / "sam", lambda module: layer_of(module).startswith("sam")) == []


def test_lower_layers_import_only_layers_below_them():
    for layer, below in LOWER_LAYERS.items():
        folder = ROOT / layer.replace(".", "/")
        assert violations(folder, lambda module, ok={layer, *below}: layer_of(module) in ok) == []


def test_the_check_sees_violations(tmp_path):
    folder = tmp_path / "sam" / "modeling"
    folder.mkdir(parents=True)
    (folder / "probe.py").write_text(
        "from sam.predictor import SamPredictor\nfrom . import common\nimport prompts.clicks\n"
    )
    found = violations(folder, lambda m: layer_of(m) == "sam.modeling", root=tmp_path)
    assert found == [
        "sam/modeling/probe.py imports prompts.clicks",
        "sam/modeling/probe.py imports sam.predictor",
        "sam/modeling/probe.py imports sam.predictor.SamPredictor",
    ]

"""The package layout is the pipeline: a stage imports only the stages before it (utils below all of them), and no
two modules import each other. Checked on the source (function-level imports included), so a new module is covered
as soon as it exists."""
from __future__ import annotations

import ast
from pathlib import Path

import hyperzero

ROOT = Path(hyperzero.__file__).parent
# utils first; each stage may import the ones before it
ORDER = ["utils", "envs", "experts", "datasets", "models", "training", "evaluation", "explore", "launchers", "cli"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the hyperzero modules it imports (anywhere in its source)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found.update(t for t in targets if t in modules and t != name)
        out[name] = found
    return out


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


def test_no_stage_imports_a_later_stage():
    wrong = []
    for module, targets in _imports().items():
        stage = _stage(module)
        for target in targets:
            other = _stage(target)
            if stage and other and ORDER.index(other) > ORDER.index(stage):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports running back up the pipeline:\n" + "\n".join(sorted(wrong))


def test_no_two_modules_import_each_other():
    graph = _imports()
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                    if a in graph.get(b, ()) and not (a.startswith(b + ".") or b.startswith(a + "."))})
    assert not pairs, f"modules importing each other: {pairs}"

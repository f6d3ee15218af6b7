"""The package's import graph has no cycle, and ``detdistill.models`` keeps its public names.

The graph is read from the source with ``ast``, not by importing: every ``import`` statement in every
``src/detdistill/**/*.py`` is an edge, at module level *and* inside functions. A lazy (function-level) import
counts: it hides a cycle from the interpreter at import time but not from the design (the issue that split
``models/`` found a six-file cycle made almost entirely of lazy imports). ``if TYPE_CHECKING:`` imports count
too. Relative imports are resolved against the importing module; ``from pkg import name`` is an edge to the
submodule ``pkg.name`` when that file exists, else to ``pkg``. An edge runs to the module named, not to its
parent packages: a package ``__init__`` that gathers its submodules (as ``detdistill.models`` does) is the
facade over them, as in torchvision and timm, and importing a submodule from inside the package does not
depend on the facade's names.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "detdistill"


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """``module -> modules of the package it imports`` (module- and function-level imports alike)."""
    modules = {_module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # `import a.b.c` names a.b.c; keep the longest prefix that is one of our modules.
                parts = target.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                if parts and ".".join(parts) != name:
                    graph[name].add(".".join(parts))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_walker_sees_lazy_relative_and_absolute_imports(tmp_path):
    files = {
        "pkg/__init__.py": "from .a import f\n",
        "pkg/a.py": "import os\nfrom . import b\n\ndef f():\n    from .sub.c import g\n    return g\n",
        "pkg/b.py": "import pkg.sub.c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def g():\n    from ..b import x\n    from .. import a\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b", "pkg.sub.c"}, "pkg.b": {"pkg.sub.c"},
                     "pkg.sub": set(), "pkg.sub.c": {"pkg.b", "pkg.a"}}
    assert find_cycle(graph) in (["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"], ["pkg.a", "pkg.sub.c", "pkg.a"])
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_registry_and_parts_import_no_entry_file():
    graph = import_graph()
    entries = {"detdistill.models.zoo", "detdistill.models.cpu_family"}
    assert not graph["detdistill.models.registry"] & (entries | {"detdistill.models.factory"})
    assert not graph["detdistill.models.parts"] & (entries | {"detdistill.models.factory"})
    assert entries <= graph["detdistill.models.factory"]


def test_lowrank_layers_is_a_leaf_of_the_package():
    # errors.py (the error classes, importing nothing) is the one module a leaf may use.
    assert not {m for m in import_graph()["detdistill.models.lowrank.layers"]
                if m.startswith(PACKAGE) and m != "detdistill.errors"}
    assert not import_graph()["detdistill.errors"]


# The public names of detdistill.models before the models/ split (issue 22); none may disappear.
PUBLIC_NAMES = [
    "COMMON_OVERRIDES", "FORMAT_VERSION", "ModelEntry", "PairingReport", "WeightsError", "build_detector",
    "build_from_spec", "checkpoint_payload", "describe_pairing", "feature_strides",
    "fetch_imagenet_mobilenet_v2", "get_entry", "list_models", "load_detector", "model_spec",
    "read_checkpoint", "register_model", "resolve_weights", "save_detector",
]
SUBMODULE_NAMES = {
    "detdistill.models.lowrank": [
        "DEFAULT_EXCLUDE", "KINDS", "CompressionReport", "LayerReport", "LowRankLayer", "SVDConv", "SVDLinear",
        "Tucker2Conv", "apply_lowrank_spec", "candidate_layers", "compress_checkpoint", "compress_detector",
        "decompose", "decompose_conv", "decompose_svd", "energy_rank", "layer_flops", "layer_kind",
        "layer_params", "load_ranks_file", "mode_factors", "plan_ranks", "spectra", "truncated_svd",
        "unfolding_shapes", "vbmf_rank",
    ],
    "detdistill.models.zoo": ["frcnn_kwargs", "load_backbone_file", "mobilenet_v2_fpn_backbone",
                              "MOBILENET_V2_DEFAULTS", "BCCD_ANCHORS", "DEFAULT_ASPECT_RATIOS"],
    "detdistill.models.cpu_family": ["CPU_DEFAULTS", "CPU_STRIDES", "CPU_ANCHORS", "CPU_OPTIONS",
                                     "MOBILENET_V2_PAIRING", "cpu_backbone", "build_cpu_detector"],
    "detdistill.models.registry": ["ModelEntry", "register_model", "get_entry", "list_models"],
}


def test_public_names_of_detdistill_models_stay():
    import detdistill.models as models

    assert sorted(models.__all__) == sorted(set(models.__all__))
    assert set(PUBLIC_NAMES) <= set(models.__all__)
    missing = [n for n in models.__all__ if not hasattr(models, n)]
    assert not missing, f"in __all__ but not importable: {missing}"


@pytest.mark.parametrize("module", sorted(SUBMODULE_NAMES))
def test_names_importable_from_their_old_modules(module):
    mod = importlib.import_module(module)
    missing = [n for n in SUBMODULE_NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lost {missing}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


# What the config may load of distillation: its own section (distill.config) and what that section is made of
# (the term registry and the term files with their pure loss functions) — never the Distiller or the cache.
LEAVES = {"detdistill.errors", "detdistill.utils", "detdistill.typed_config"}
"""Modules every layer may use: the error classes, file helpers and the typed-config machinery."""
CONFIG_MAY_REACH_IN_DISTILL = ("detdistill.distill.config", "detdistill.distill.terms", "detdistill.distill.losses")


def test_layers_point_one_way():
    graph = import_graph()
    config = _reachable(graph, "detdistill.config")
    assert not {m for m in config if m.startswith("detdistill.engine")}
    assert not {m for m in config if m.startswith("detdistill.distill")
                and not m.startswith(CONFIG_MAY_REACH_IN_DISTILL)}, "config reaches distillation code"
    assert "detdistill.distill.distiller" not in config and "detdistill.cli" not in config
    # data/ is the bottom layer: it may use only the package's shared leaves (errors, utils, typed_config).
    for module in (m for m in graph if m.startswith("detdistill.data")):
        above = {m for m in _reachable(graph, module) if not m.startswith("detdistill.data") and m not in LEAVES}
        assert not above, f"{module} reaches {sorted(above)}"
    # distill/ runs below engine/: the run hands it what it needs (a cache's rank barrier, a teacher source).
    for module in (m for m in graph if m.startswith("detdistill.distill")):
        engine = {m for m in _reachable(graph, module) if m.startswith("detdistill.engine")}
        assert not engine, f"{module} reaches {sorted(engine)}"
    for module in (m for m in graph if m.startswith("detdistill.engine")):
        assert "detdistill.cli" not in _reachable(graph, module), module
    # The Distiller reads its section from beside it, not from the experiment schema.
    assert "detdistill.config" not in _reachable(graph, "detdistill.distill.distiller")

"""The package's shape: imports run one way, downward, through the rooms; no cycles; no huge modules.

Every import counts, also one inside a function or under TYPE_CHECKING: a
function-level import still ties two modules together, it only hides it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aelab

PACKAGE = Path(aelab.__file__).parent
MAX_LINES = 700

# lowest first; a module may import from its own layer and the layers below it
LAYERS = [
    {"aelab.errors", "aelab.fileio", "aelab.device", "aelab.version", "aelab.runconfig", "aelab.terminal",
     "aelab.locking"},
    {"aelab.data"},
    {"aelab.models"},
    {"aelab.training"},
    {"aelab.codec"},
    {"aelab.evaluation"},
    {"aelab.api", "aelab.sklearn"},  # the scikit-learn transformer: beside the api, on the same layers
    {"aelab.tutorial"},  # above the api: the tutorial trains through api.train_model, as `aelab train` does
    {"aelab.cli", "aelab.cli_choices", "aelab.cli_codec", "aelab.cli_data", "aelab.cli_options", "aelab.cli_pipeline", "aelab.__main__", "aelab"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path, modules=MODULES) -> set[str]:
    """Every module of ``modules`` that ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import module` imports the module; `from module import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(targets)
    found.discard(name)
    return {t for t in found if t in modules}


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer if top != "aelab"):
            return i
    if module == "aelab":
        return len(LAYERS) - 1
    raise AssertionError(f"{module} belongs to no layer: add its room to LAYERS")


def test_every_module_belongs_to_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_run_downward():
    upward = [f"{a} imports {b}" for a, targets in GRAPH.items() for b in targets if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(sorted(upward))


def test_the_import_graph_has_no_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                cycle = path[path.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_the_checker_sees_every_kind_of_import(tmp_path):
    """Function-level, TYPE_CHECKING, relative and `from package import module` imports all count."""
    files = {
        "pkg/__init__.py": "",
        "pkg/low.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mid.py": "def f():\n    from ..low import x\n",
        "pkg/sub/top.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import mid\n",
        "pkg/other.py": "import pkg.low\nfrom pkg.sub import top\n",
    }
    modules = {}
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        parts = list(Path(rel).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges = {m: imported_modules(m, p, modules) for m, p in modules.items()}
    assert edges["pkg.sub.mid"] == {"pkg.low"}
    assert edges["pkg.sub.top"] == {"pkg.sub.mid"}
    assert edges["pkg.other"] == {"pkg.low", "pkg.sub.top"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_size_limit(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}): split it by concern"


@pytest.mark.parametrize("room", sorted({m for m in MODULES if MODULES[m].name == "__init__.py" and m != "aelab"}))
def test_every_room_says_what_it_owns_and_may_import(room):
    doc = ast.get_docstring(ast.parse(MODULES[room].read_text(encoding="utf-8"))) or ""
    assert len(doc.split()) >= 20 and "import" in doc, f"{room}/__init__.py needs a docstring: what it owns, what it may import"


# --- one decision per concern: what kind of source a path is --------------------------------------

RESOLVER = "aelab.data.resolver"
# the names that tell one kind of source from another; only the resolver, and where each is defined, uses them
# (and the folder reader lists a folder's image files by suffix)
SOURCE_CLASSIFIERS = {"TABLE_SUFFIXES": {"aelab.data.tables"},
                      "IMAGE_FILE_SUFFIXES": {"aelab.data.pictures", "aelab.data.folders"},
                      "is_packed": {"aelab.data.packed"}, "has_images": {"aelab.data.folders"},
                      "npz_layout": set(), "find_idx_file": set()}
SOURCE_SUFFIXES = {".npz", ".npy", ".csv", ".tsv", ".parquet", ".png", ".jpg", ".jpeg", ".idx",
                   "-idx3-ubyte", ".idx3-ubyte", "_cntk_text.txt"}
# places that name *outputs* (what to write), or read one format they were handed, never classify a source
OUTPUT_NAMING = {
    ("aelab.data.tables", "read_table"),      # which table format, once the resolver said "table"
    ("aelab.data.codes", "write_codes"), ("aelab.data.codes", "read_codes"),  # codes files, not data sources
    ("aelab.data.saving", "convert"),         # the format to write
    ("aelab.codec.api", "output_format"),     # what decompress writes
    ("aelab.evaluation.anomaly", "write_scores"), ("aelab.api", "anomaly_scores"),  # the scores file
    ("aelab.cli", "_name_outputs"), ("aelab.cli", "_refuse_output_over_input"),  # FILE.png/FILE.html outputs
    ("aelab.data.saving", "_data_files"),     # the files a conversion would write over or beside
}


def _functions_and_nodes(tree: ast.AST):
    """(enclosing function name or '', node) for every node."""
    def walk(node, owner):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else owner
            yield name, child
            yield from walk(child, name)
    yield from walk(tree, "")


def _compared_strings(node: ast.AST) -> list[str]:
    """The string constants ``node`` compares with (``==``, ``in``) or passes to ``endswith``/``startswith``."""
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in ("endswith", "startswith"):
        operands = list(node.args)
    else:
        return []
    return [c.value for o in operands for c in ast.walk(o) if isinstance(c, ast.Constant) and isinstance(c.value, str)]


def _source_decisions(module: str, path: Path) -> list[str]:
    found = []
    for owner, node in _functions_and_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{module}:{getattr(node, 'lineno', '?')}"
        allowed = module == RESOLVER or (module, owner) in OUTPUT_NAMING
        if isinstance(node, ast.Name) and node.id in SOURCE_CLASSIFIERS \
                and module != RESOLVER and module not in SOURCE_CLASSIFIERS[node.id]:
            found.append(f"{where} uses {node.id}")
        found += [f"{where} tests the suffix {text!r} (in {owner or 'the module'})" for text in _compared_strings(node)
                  if text.lower() in SOURCE_SUFFIXES and not allowed]
        if isinstance(node, ast.Attribute) and node.attr == "suffix" and not module.startswith("aelab.data.") \
                and not allowed:
            found.append(f"{where} asks a path's .suffix (in {owner or 'the module'})")
    return found


def test_the_kind_of_a_data_source_is_decided_in_one_module():
    """aelab.data.resolver.resolve decides whether a path is IDX, CTF, an image folder, a table, a .npz or a
    packed set; every reader dispatches on its answer instead of testing suffixes or folders again."""
    found = [line for module, path in sorted(MODULES.items()) for line in _source_decisions(module, path)]
    assert not found, "decide the source's kind in aelab.data.resolver:\n" + "\n".join(found)


def test_the_source_check_sees_a_second_decision(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from aelab.data.tables import TABLE_SUFFIXES\n"
                    "def read(p):\n    if p.suffix in TABLE_SUFFIXES or str(p).endswith('.npz'):\n        pass\n")
    found = _source_decisions("aelab.codec.api", path)
    assert len(found) == 3 and any("'.npz' (in read)" in line for line in found)

"""Layers that import downward only (docs/architecture.md, "Layers"), read from the source.

Every module of the package is parsed (nothing is imported) and every import statement in
it, at module level and inside functions alike, becomes an edge to the module it names.
Each module belongs to one layer; the test fails on an import from a lower layer to a
higher one, between the two layers that sit beside each other (the board runtime and
training), from ``host/`` or ``overlay/`` to ``training/`` at any layer, to the console
script (``sentei.cli``) from anywhere but ``sentei.__main__``, on torch or pynq in the
bottom layer, and on an import cycle. Imports by name at run time (the CLI's
``COMMAND_MODULES``, the engine registry's entry points) are not edges: that is how the
upper layers plug in without the lower ones naming them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: import name -> folder (pyproject.toml's [tool.setuptools.package-dir])
PACKAGES = {"sentei": "sentei", "sentei.host": "host", "sentei.training": "training",
            "sentei.overlay": "overlay", "sentei.notebooks": "notebooks"}

#: bottom to top; layers of equal rank sit beside each other and never import each other
RANKS = {"base": 0, "engines": 1, "runtime": 2, "training": 2, "commands": 3, "cli": 4}
BESIDE = {("runtime", "training"), ("training", "runtime")}
#: the bottom layer runs on a board image and in a plain install: neither of these
BASE_NEVER = ("torch", "pynq")

#: module -> layer: the first rule whose name is the module or, ending in ".", a prefix of it
RULES = (
    ("sentei.cli", "cli"), ("sentei.__main__", "cli"),
    # command-line handlers and the scripts that drive the library (python -m ...)
    ("sentei.host.commands.", "commands"), ("sentei.host.commands", "commands"),
    ("sentei.overlay.commands", "commands"), ("sentei.training.commands", "commands"),
    ("sentei.training.bundle", "commands"), ("sentei.training.results", "commands"),
    # the board runtime, evaluation and the benchmark toolkit's libraries
    ("sentei.host", "runtime"), ("sentei.host.runtime.", "runtime"), ("sentei.host.runtime", "runtime"),
    ("sentei.host.bench", "runtime"), ("sentei.host.bench.power", "runtime"), ("sentei.host.bench.power.", "runtime"),
    ("sentei.host.bench.report", "runtime"), ("sentei.host.bench.backends", "runtime"), ("sentei.host.bench.timing", "runtime"),
    ("sentei.host.bench.trtexec", "runtime"), ("sentei.host.bench.environment", "runtime"),
    # training: PyTorch, beside the runtime
    ("sentei.training.", "training"), ("sentei.training", "training"),
    # the engines: the fast emulator, the overlay's software models, engines registered from elsewhere
    ("sentei.host.emulator.", "engines"), ("sentei.host.emulator", "engines"), ("sentei.host.bench.engine", "engines"),
    ("sentei.host.engine_registry", "engines"), ("sentei.overlay.", "engines"), ("sentei.overlay", "engines"),
    # the model file, the reference engine, small shared I/O and data helpers
    ("sentei", "base"), ("sentei.errors", "base"), ("sentei.cache", "base"), ("sentei.atomic_write", "base"),
    ("sentei.output_paths", "base"), ("sentei.notebooks", "base"), ("sentei.host.options", "base"),
    ("sentei.host.modelfile.", "base"), ("sentei.host.modelfile", "base"),
    ("sentei.host.data.", "base"), ("sentei.host.data", "base"),
)

#: import cycles that stand, each in a module another change is rewriting; this list may only
#: shrink (a cycle not in it fails, and so does one in it that is gone)
KNOWN_CYCLES: set[frozenset] = set()


def modules() -> dict[str, Path]:
    """Import name -> file of every module of the package (packages by their ``__init__.py``)."""
    found = {}
    for name, folder in PACKAGES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base)
            if not all((base / Path(*rel.parts[:i]) / "__init__.py").is_file() for i in range(len(rel.parts))):
                continue  # a script beside the package (overlay/scripts), not a module of it
            parts = rel.with_suffix("").parts
            found[".".join((name, *parts[:-1])) if parts[-1] == "__init__" else ".".join((name, *parts))] = path
    return found


def imports(name: str, path: Path, known) -> list[tuple[str, int]]:
    """``(imported name, line)`` of every import in the file, at any depth: a module of the
    package where the name is one (``from sentei.host.modelfile import schema``: ``sentei.host.modelfile.schema``),
    else the name as written (``torch.nn``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if full in known else base, node.lineno))
    return out


def layer_of(name: str) -> str:
    for rule, layer in RULES:
        if name == rule or (rule.endswith(".") and name.startswith(rule)):
            return layer
    raise AssertionError(f"{name} has no layer: add it to RULES in tests/test_layering.py and to the picture "
                         f"in docs/architecture.md")


def owning_module(target: str, known) -> str | None:
    """The package module an imported name lies in (``sentei.host.modelfile.schema.load`` -> ``sentei.host.modelfile.schema``)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, dict[str, int]]:
    """Module -> {module of the package it imports: first line}."""
    known = modules()
    edges = {}
    for name, path in known.items():
        edges[name] = {}
        for target, line in imports(name, path, known):
            inner = owning_module(target, known)
            if inner is not None and inner != name:
                edges[name].setdefault(inner, line)
    return edges


def violations(edges) -> list[str]:
    bad = []
    for source, targets in sorted(edges.items()):
        a = layer_of(source)
        for target, line in sorted(targets.items()):
            b = layer_of(target)
            where = f"{source}:{line} imports {target} ({a} -> {b})"
            if target == "sentei.cli" and source != "sentei.__main__":
                bad.append(f"{where}: only sentei.__main__ imports the console script")
            elif target.startswith("sentei.training") and source.startswith(("sentei.host", "sentei.overlay")):
                bad.append(f"{where}: host/ and overlay/ never import training/ (register with "
                           f"sentei.host.engine_registry instead)")
            elif RANKS[b] > RANKS[a]:
                bad.append(f"{where}: a lower layer imports a higher one")
            elif (a, b) in BESIDE:
                bad.append(f"{where}: the runtime and training sit beside each other")
    return bad


def cycles(edges) -> list[frozenset]:
    """The import cycles: every strongly connected set of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def edges():
    return graph()


def test_every_module_has_a_layer(edges):
    assert len(edges) > 40  # the walk found the package
    for name in edges:
        layer_of(name)


def test_imports_go_downward_only(edges):
    bad = violations(edges)
    assert not bad, "imports against the layers (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycles_but_the_known_ones(edges):
    found = set(cycles(edges))
    new = [" <-> ".join(sorted(group)) for group in found - KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(new)
    gone = [" <-> ".join(sorted(group)) for group in KNOWN_CYCLES - found]
    assert not gone, "no longer a cycle, take it off KNOWN_CYCLES:\n" + "\n".join(gone)


def test_the_bottom_layer_imports_neither_torch_nor_pynq():
    known = modules()
    bad = [f"{name}:{line} imports {target}" for name, path in known.items() if layer_of(name) == "base"
           for target, line in imports(name, path, known) if target.split(".")[0] in BASE_NEVER]
    assert not bad, "the bottom layer runs without torch and pynq:\n" + "\n".join(bad)


def test_the_picture_in_the_docs_names_every_module_with_a_rule():
    """docs/architecture.md's layer picture stays true: each module RULES places by name is in it."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    picture = text[text.index("## Layers"):].split("```")[1]
    words = {word.strip(".") for word in re.findall(r"[\w.]+", picture)}
    missing = [name for name, _ in RULES if not name.endswith(".") and name != "sentei"
               and not {name, name.split(".", 1)[1], name.rpartition(".")[2]} & words]
    assert not missing, f"not in the picture of docs/architecture.md: {', '.join(missing)}"


def test_the_checks_catch_what_they_are_for():
    """The rules on a made-up graph: each kind of wrong import is reported, and a cycle is found."""
    edges = {"sentei.host.runtime.driver": {"sentei.training.engine": 3}, "sentei.training.engine": {},
             "sentei.host.modelfile.schema": {"sentei.host.runtime.segmenter": 5}, "sentei.host.runtime.segmenter": {"sentei.host.modelfile.schema": 1},
             "sentei.host.runtime.camera": {"sentei.cli": 9}, "sentei.cli": {},
             "sentei.training.train": {"sentei.host.runtime.demo": 7}, "sentei.host.runtime.demo": {}}
    text = "\n".join(violations(edges))
    assert "sentei.host.runtime.driver:3 imports sentei.training.engine" in text
    assert "sentei.host.modelfile.schema:5 imports sentei.host.runtime.segmenter (base -> runtime): a lower layer" in text
    assert "sentei.host.runtime.camera:9 imports sentei.cli" in text
    assert "sentei.training.train:7 imports sentei.host.runtime.demo (training -> runtime)" in text
    assert cycles(edges) == [frozenset({"sentei.host.modelfile.schema", "sentei.host.runtime.segmenter"})]


#: library functions -> the one module that defines them and that every caller imports them
#: from (issue 28, "one house"): none imports them through another module (a re-export) or
#: defines them again
ONE_HOME = {
    "atomic_write_bytes": "sentei.atomic_write",
    "set_emulator_threads": "sentei.host.emulator.engine",  # a library function, not the CLI's
}


def python_files() -> list[Path]:
    """Every Python file of the checkout: the package, its tests, scripts and benchmarks."""
    return sorted(p for p in ROOT.rglob("*.py")
                  if not any(part.startswith(".") or part in ("build", "runs") for part in p.relative_to(ROOT).parts))


def homeless_uses(name_of: dict[str, str], path: Path, tree: ast.AST, homes: dict[str, str]) -> list[str]:
    """Where ``tree`` (the file ``path``, module ``name_of.get(path)``) binds or reaches a name of
    ``homes`` anywhere but through its home module."""
    module = name_of.get(path)
    rel = path.relative_to(ROOT) if path.is_absolute() else path
    bad = []
    if module is not None:  # a module of the package: only the home defines the name
        for node in tree.body:
            bound = ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                     [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)])
            bad += [f"{rel}:{node.lineno} defines {n} again: {homes[n]} does" for n in bound
                    if n in homes and module != homes[n]]
    aliases = {}  # local name -> module, for ``import a.b as c`` and ``from a import b as c``
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
            bad += [f"{rel}:{node.lineno} imports {a.name} from {node.module}: import it from {homes[a.name]}"
                    for a in node.names if a.name in homes and node.module != homes[a.name]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in homes:
            owner = ast.unparse(node.value)
            owner = aliases.get(owner.split(".")[0], owner.split(".")[0]) + owner[len(owner.split(".")[0]):]
            if owner != homes[node.attr]:
                bad.append(f"{rel}:{node.lineno} reaches {node.attr} through {owner}: use {homes[node.attr]}")
    return bad


def test_library_functions_have_one_home():
    name_of = {path: name for name, path in modules().items()}
    for name, home in ONE_HOME.items():
        tree = ast.parse(modules()[home].read_text(encoding="utf-8"))
        assert name in {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}, (
            f"{home} does not define {name} (ONE_HOME)")
    bad = []
    for path in python_files():
        bad += homeless_uses(name_of, path, ast.parse(path.read_text(encoding="utf-8"), str(path)), ONE_HOME)
    assert not bad, "import these from their one module (ONE_HOME):\n" + "\n".join(bad)


def test_the_one_home_check_catches_a_second_copy_and_callers_through_another_module():
    homes = {"atomic_write_bytes": "sentei.atomic_write"}
    copy = ast.parse("import os\ndef atomic_write_bytes(path, data):\n    pass\n")
    caller = ast.parse("from sentei.host.modelfile import schema as fmt\n"
                       "def f():\n    from sentei.host.modelfile.schema import atomic_write_bytes\n"
                       "    fmt.atomic_write_bytes('p', b'')\n")
    good = ast.parse("from sentei import atomic_write\nimport sentei.atomic_write as aw\n"
                     "from sentei.atomic_write import atomic_write_bytes\n"
                     "atomic_write.atomic_write_bytes('p', b'')\naw.atomic_write_bytes('p', b'')\n")
    schema = Path("host/modelfile/schema.py")
    assert homeless_uses({schema: "sentei.host.modelfile.schema"}, schema, copy, homes) == [
        "host/modelfile/schema.py:2 defines atomic_write_bytes again: sentei.atomic_write does"]
    assert homeless_uses({}, Path("x.py"), caller, homes) == [
        "x.py:3 imports atomic_write_bytes from sentei.host.modelfile.schema: import it from sentei.atomic_write",
        "x.py:4 reaches atomic_write_bytes through sentei.host.modelfile.schema: use sentei.atomic_write"]
    assert homeless_uses({schema: "sentei.host.modelfile.schema"}, schema, good, homes) == []

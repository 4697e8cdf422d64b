"""The package's shape: who may import whom, a torch-free bundle path, one reader of manifests, working entry points.

Imports are read from the source (``ast``), function-level imports included; imports under
``if TYPE_CHECKING:`` are annotations only and do not count.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"sdk": "salsdk", "convert": "salsdk.convert", "quantize": "salsdk.quantize", "bench": "salsdk.bench"}
AREAS = ("convert", "quantize", "bench", "cli", "clients")  # everything else of salsdk is the core
# who may use whom, beyond everyone using the core; salsdk.__main__ is the cli's entry point
# (bench measures the clients, e.g. the browser page; clients never import bench)
ALLOWED = {"convert": {"quantize"}, "bench": {"convert", "clients"}, "cli": {"convert", "bench", "clients"}}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = (path, path.name == "__init__.py")
    return found


def _runtime_imports(name: str, path: Path, is_package: bool) -> set[str]:
    """salsdk modules ``name`` imports (``from a import b`` counts as a and a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            found |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
    return {m for m in found if m and m.startswith("salsdk")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, (path, is_package) in modules.items():
        for target in _runtime_imports(name, path, is_package):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name and not name.startswith(target + "."):
                edges[name].add(target)  # a package's own __init__ is not a dependency of its modules
    return {name: edges[name] for name in modules}


def _area(module: str) -> str:
    if module == "salsdk.__main__":
        return "cli"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in AREAS else "core"


def test_quantize_imports_nothing_from_convert(graph):
    offending = {m: sorted(t for t in targets if _area(t) == "convert")
                 for m, targets in graph.items() if _area(m) == "quantize"}
    assert not {m: t for m, t in offending.items() if t}


def test_areas_depend_only_downwards(graph):
    wrong = sorted((m, t) for m, targets in graph.items() for t in targets
                   if _area(t) not in ("core", _area(m)) and _area(t) not in ALLOWED.get(_area(m), set()))
    assert not wrong, wrong


def test_no_import_cycle(graph):
    """No strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    assert len(graph) > 60 and not cycles, cycles


def test_loading_an_onnx_bundle_imports_neither_torch_nor_tensorflow(unisal_bundles):
    code = ("import sys, numpy as np, salsdk; p = salsdk.load(sys.argv[1]); p.predict(np.zeros((40, 50, 3), np.uint8));"
            " print('torch' in sys.modules, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(unisal_bundles / "UniSal-onnx-fp32")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_import_salsdk_is_light():
    done = subprocess.run([sys.executable, "-c", "import sys, salsdk; salsdk.list_models; print(sorted(m for m in "
                           "('torch', 'tensorflow', 'onnxruntime', 'coremltools') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr)


MANIFEST_NAMES = re.compile(r"manifest|document|stored|^m$", re.I)


def test_only_the_manifest_module_indexes_manifests_by_key():
    """``manifest["input"]`` or ``manifest.get("fidelity")`` anywhere but sdk/manifest.py is a second reader."""
    found = []
    for name, (path, _) in _modules().items():
        if name == "salsdk.manifest":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            target = None
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                target = node.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                target = node.func.value
            if target is not None and MANIFEST_NAMES.search(ast.unparse(target).split(".")[-1].split("[")[0]):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)


def _documented_entry_points() -> set[str]:
    paths = [REPO / "README.md", *[p for folder in FOLDERS for p in (REPO / folder).rglob("*.py")]]
    return {m for path in paths for m in re.findall(r"python -m (salsdk[\w.]*)", path.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("command", ["list", "weights", "predict", "batch", "check", "convert", "bench", "export"])
def test_every_command_answers_help(command):
    done = subprocess.run([sys.executable, "-m", "salsdk", command, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: salsdk " + command), done.stderr


def test_every_documented_python_m_entry_point_exists():
    """Each ``python -m salsdk...`` the README or a docstring names is runnable: it has a ``__main__``."""
    from importlib.util import find_spec

    documented = _documented_entry_points()
    assert "salsdk" in documented
    missing = []
    for module in documented:
        spec = find_spec(module)
        if spec is None:
            missing.append(module)
            continue
        source = Path(spec.origin).read_text(encoding="utf-8")
        if spec.submodule_search_locations is not None:
            missing += [] if find_spec(module + ".__main__") else [module]
        elif '__name__ == "__main__"' not in source:
            missing.append(module)
    assert not missing, missing

"""The dependency rules of docs/architecture.md, enforced: runtime imports no torch and nothing of
ours above it; train never imports export, benchmarks or analysis; export never benchmarks or
analysis; serve only runtime; and every runtime module imports with torch blocked."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LAYERS = ("runtime", "train", "export", "benchmarks", "analysis", "serve")
# who may import whom (besides itself)
ALLOWED = {
    "runtime": set(),
    "train": {"runtime"},
    "export": {"runtime", "train"},
    "benchmarks": {"runtime", "train", "export"},
    "analysis": {"runtime", "train", "export"},
    "serve": {"runtime"},
}


def _imports(path: Path) -> set[str]:
    """Top-level package names imported anywhere in the module (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_no_module_imports_a_layer_it_must_not(layer):
    bad = []
    for path in sorted((ROOT / layer).glob("*.py")):
        for name in _imports(path) & set(LAYERS) - {layer} - ALLOWED[layer]:
            bad.append(f"{path.relative_to(ROOT)} imports {name}")
        if layer in ("runtime", "serve") and "torch" in _imports(path):
            bad.append(f"{path.relative_to(ROOT)} imports torch")
    assert not bad, bad


def test_every_runtime_module_imports_with_torch_blocked():
    modules = [f"runtime.{p.stem}" for p in sorted((ROOT / "runtime").glob("*.py"))
               if p.stem != "__init__"]
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, sys
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked")
        sys.meta_path.insert(0, NoTorch())
        for name in {modules!r}:
            importlib.import_module(name)
        assert "torch" not in sys.modules
        print("ok", len({modules!r}))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")

"""Issue 6.7: safe defaults, checked on the package source (by AST, so a call split over
several lines is still seen): servers bind 127.0.0.1 unless --host says otherwise, and user
files are never unpickled (np.load(allow_pickle=False), torch.load(weights_only=True),
yaml.safe_load; no pickle/marshal/shelve/joblib loads at all)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "nas"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
              ("cloudpickle", "load"), ("cloudpickle", "loads"), ("dill", "load"),
              ("dill", "loads"), ("marshal", "load"), ("marshal", "loads"),
              ("joblib", "load"), ("shelve", "open"), ("yaml", "unsafe_load"),
              ("yaml", "full_load"), ("yaml", "load_all"), ("yaml", "unsafe_load_all")}


def _name(node: ast.AST) -> str:
    """Dotted name of a call target (``np.load``, ``torch.load``, ``load``)."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def _kw(call: ast.Call, key: str) -> object:
    for k in call.keywords:
        if k.arg == key:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return "<missing>"


def problems(source: str, where: str) -> list[str]:
    """Unsafe loads and non-local default hosts in one module's source."""
    out: list[str] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            mod, _, fn = name.rpartition(".")
            line = f"{where}:{node.lineno}: {name}"
            if fn == "load" and mod in ("np", "numpy"):
                if _kw(node, "allow_pickle") is not False:
                    out.append(f"{line} without allow_pickle=False")
            elif fn == "load" and mod == "torch":
                if _kw(node, "weights_only") is not True:
                    out.append(f"{line} without weights_only=True")
            elif fn == "load" and mod == "yaml":
                loader = node.keywords[0].value if node.keywords else (
                    node.args[1] if len(node.args) > 1 else None)
                if loader is None or "SafeLoader" not in _name(loader):
                    out.append(f"{line} without SafeLoader")
            elif (mod.split(".")[-1], fn) in UNPICKLERS:
                out.append(f"{line}: unpickles")
            elif fn == "add_argument" and any(
                    isinstance(a, ast.Constant) and str(a.value).endswith("host")
                    for a in node.args):
                d = _kw(node, "default")
                if d not in LOCAL_HOSTS:
                    out.append(f"{line} host default {d!r}")
            elif fn in ("run_server", "serve", "run") and _kw(node, "host") not in (
                    "<missing>", "<expr>", *LOCAL_HOSTS):
                out.append(f"{line} host={_kw(node, 'host')!r}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + \
                list(node.args.defaults) + list(node.args.kw_defaults)
            for a, d in zip(args, defaults):
                if "host" in a.arg and isinstance(d, ast.Constant) and d.value is not None \
                        and d.value not in LOCAL_HOSTS:
                    out.append(f"{where}:{node.lineno}: {node.name}({a.arg}={d.value!r})")
        elif isinstance(node, ast.Constant) and node.value in ("0.0.0.0", "::"):
            out.append(f"{where}:{node.lineno}: literal {node.value!r}")
    return out


def test_the_package_loads_user_files_safely_and_binds_locally() -> None:
    files = sorted(PKG.rglob("*.py"))
    assert len(files) > 20
    found = [p for f in files for p in problems(f.read_text(), str(f.relative_to(PKG)))]
    assert found == []


@pytest.mark.parametrize("snippet", [
    "np.load(p)",
    "np.load(p, allow_pickle=True)",
    "numpy.load(\n  p,\n  mmap_mode='r')",
    "torch.load(p)",
    "torch.load(p, weights_only=False)",
    "yaml.load(text)",
    "yaml.load(text, Loader=yaml.Loader)",
    "yaml.unsafe_load(text)",
    "pickle.loads(b)",
    "import cloudpickle; cloudpickle.load(f)",
    "p.add_argument('--host', default='0.0.0.0')",
    "def serve(url, host='192.0.2.1'): pass",
    "run_server(storage, host='0.0.0.0', port=8080)",
])
def test_the_checker_catches_unsafe_code(snippet: str) -> None:
    assert problems(snippet, "x.py"), snippet  # so the package test above can fail


@pytest.mark.parametrize("snippet", [
    "np.load(p, mmap_mode='r', allow_pickle=False)",
    "torch.load(p, map_location='cpu', weights_only=True)",
    "yaml.safe_load(text)",
    "yaml.load(text, Loader=yaml.SafeLoader)",
    "p.add_argument('--host', default='127.0.0.1')",
    "def serve(url, host='127.0.0.1'): pass",
])
def test_the_checker_accepts_safe_code(snippet: str) -> None:
    assert problems(snippet, "x.py") == []

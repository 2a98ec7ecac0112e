"""The shared layer (``projects/``) imports no method package: the methods build on it, never the reverse."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("vis_stg", "vis_rgnn", "vis_config")


def _imported_modules(path):
    tree = ast.parse(open(path).read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_shared_layer_imports_no_method_package():
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "projects")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                for module in _imported_modules(path):
                    if module.split(".")[0] in METHODS:
                        offenders.append(f"{os.path.relpath(path, ROOT)}: import {module}")
    assert not offenders, offenders


def test_importing_the_shared_layer_loads_no_method():
    code = (
        "import pkgutil, importlib, sys, projects\n"
        "for m in pkgutil.walk_packages(projects.__path__, 'projects.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        f"loaded = sorted(n for n in sys.modules if n.split('.')[0] in {METHODS!r})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)

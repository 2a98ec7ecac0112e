"""The shared layer (``projects/``) imports no method package: the methods build on it, never the reverse."""

import ast
import os
import re
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


def test_tools_experiments_demo_and_tests_edit_no_sys_path():
    """Tools run as ``python -m benchmarks.<name>``, studies as ``python -m experiments.<name>`` (installed), the
    demo as ``python demo/demo.py`` (it imports installed packages only) and tests import their helpers as
    ``tests.<module>`` (pyproject's pythonpath): none edits ``sys.path``, and no test imports another test module."""
    offenders = []
    for top in ("benchmarks", "experiments", "demo", "tests"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                path = os.path.join(folder, name)
                if not name.endswith(".py") or path == os.path.join(ROOT, "tests", "conftest.py"):
                    continue
                if re.search(r"sys\.path(\.insert|\.append|\[\d*\]\s*=|\s*\+?=)", open(path).read()):
                    offenders.append(f"{os.path.relpath(path, ROOT)}: edits sys.path")
                for module in _imported_modules(path):
                    if top == "demo" and module.split(".")[0] == "demo":  # as a script, "demo" is demo/demo.py
                        offenders.append(f"{os.path.relpath(path, ROOT)}: imports {module}, not installed")
                    if module.split(".")[-1].startswith("test_") and module.split(".")[0] in ("tests", module):
                        offenders.append(f"{os.path.relpath(path, ROOT)}: imports the test module {module}")
    assert not offenders, offenders

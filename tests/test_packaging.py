"""A non-editable ``pip install .`` gives importable packages that work from any working directory."""

import os
import subprocess
import sys
import sysconfig
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(600)
def test_non_editable_install_imports_from_another_directory(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    # Reuse this interpreter's dependencies (torch, detectron2, ...) without this project's editable hook.
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", ROOT],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    code = (
        "import projects, vis_stg, vis_rgnn, projects.data, projects.evaluation\n"
        "from vis_config import get_project_cfg\n"
        "cfg = get_project_cfg()\n"
        "assert 'VIS_STG' in cfg.MODEL and 'RGNN' in cfg.MODEL\n"
        "from projects.data.image_sources import SHIPPED_CATEGORY_MAPS as maps\n"
        "assert maps == ['coco_to_ovis', 'coco_to_ytvis_2019', 'coco_to_ytvis_2021'], maps  # package data\n"
        "import vis_config\n"
        f"assert not any(m.__file__.startswith({ROOT!r}) for m in (projects, vis_stg, vis_rgnn, vis_config))\n"
        "print(vis_stg.__file__)\n"
    )
    out = subprocess.run([python, "-c", code], check=True, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.strip().startswith(site)


def test_packages_import_from_another_working_directory(tmp_path):
    code = "import projects.data, vis_stg, vis_rgnn; from vis_config import get_project_cfg; get_project_cfg()"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # the installed (editable) packages

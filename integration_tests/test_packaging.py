"""`pip install .` (the docker image's install path, not only `-e`) must give working commands:
spec.yaml, the manifest and the schemas travel as package data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel-install")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(REPO)],
        check=True, capture_output=True,
    )
    wheel = next((work / "dist").glob("airbyte_mistral-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(subprocess.check_output([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # Install the wheel itself; its dependencies come from this test run's environment (a plain
    # path line, so that environment's editable finder for this repo is not loaded).
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site_packages), str(wheel)], check=True, capture_output=True)
    (site_packages / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(venv: Path, module: str, *args: str, cwd: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import sys; from {module} import run; sys.argv[0] = '{module}'; run()", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_installed_wheel_carries_spec_manifest_and_schemas(installed_venv: Path, tmp_path: Path):
    probe = subprocess.run(
        [str(installed_venv / "bin" / "python"), "-c", "import source_mistral, mistral_connection; print(source_mistral.__file__); print(mistral_connection.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )
    assert str(REPO) not in probe.stdout, f"the installed package must not be the checkout: {probe.stdout}"
    site = Path(probe.stdout.splitlines()[1]).parent
    assert (site / "spec.yaml").is_file(), "spec.yaml must be packaged inside mistral_connection"

    spec = next(m for m in _run(installed_venv, "source_mistral.run", "spec", cwd=tmp_path) if m["type"] == "SPEC")
    assert list(spec["spec"]["connectionSpecification"]["properties"])[:3] == ["api_key", "model", "base_url"]

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_key": "k", "base_url": "http://127.0.0.1:9"}))
    catalog = next(m for m in _run(installed_venv, "source_mistral.run", "discover", "--config", str(config), cwd=tmp_path) if m["type"] == "CATALOG")
    names = {s["name"] for s in catalog["catalog"]["streams"]}
    assert names == {"models", "files", "batch_jobs", "fine_tuning_jobs", "agents", "batch_job_results"}
    files = next(s for s in catalog["catalog"]["streams"] if s["name"] == "files")
    assert "created_at" in files["json_schema"]["properties"], "stream schemas must be packaged"


def test_installed_wheel_declares_the_console_scripts(installed_venv: Path):
    import zipfile

    wheel = next(installed_venv.parent.joinpath("dist").glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(archive.read(n).decode() for n in archive.namelist() if n.endswith("entry_points.txt"))
    for script in ("source-mistral", "destination-mistral", "mistral-emulator"):
        assert f"{script} =" in entry_points, f"{script} missing from the wheel's console scripts"

"""`pip install .` (the docker image's install path, not only `-e`) must give working commands:
spec.yaml, the manifest and the schemas travel as package data. What the connectors install is the
connectors only: the emulator is a distribution of its own (emulator/pyproject.toml), and the demo,
benchmark and test code is not packaged at all."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONNECTOR_PACKAGES = {"mistral_connection", "source_mistral", "destination_mistral"}
# Modules that serve development only: none may reach a connector install (or image).
DEVELOPMENT_ONLY = re.compile(
    r"(^|/)(mistral_emulator|emulator|tools|tests|scripts)/|(^|/)(demo|bench\w*|testing)\.py$"
)


PACKAGES = {"source-mistral": "source_mistral", "destination-mistral": "destination_mistral"}
# What `pip install .` of the whole distribution needs.
DISTRIBUTION_SOURCES = ["setup.py", "README.md", "spec.yaml", *sorted(CONNECTOR_PACKAGES)]


def _copied_by_the_image(connector: str) -> list[str]:
    """What a connector's Dockerfile copies into its build stage."""
    dockerfile = (REPO / "connectors" / connector / "Dockerfile").read_text(encoding="utf-8")
    copies = [
        line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ") and "--from" not in line
    ]
    return [source for sources in copies for source in sources]


def _wheel(sources: list[str], project: str, work: Path, pattern: str) -> Path:
    """Builds from a copy of `sources` alone: a checkout's own build/ directory may hold modules since
    removed, which setuptools would put into the wheel again."""
    context = work / "context"
    for source in sources:
        if (REPO / source).is_dir():
            shutil.copytree(
                REPO / source, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
            )
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, context / source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work / "dist"),
            str(context / project),
        ],
        check=True,
        capture_output=True,
    )
    return next((work / "dist").glob(pattern))


def _wheel_metadata(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return next(archive.read(n).decode() for n in archive.namelist() if n.endswith(f".dist-info/{name}"))


@pytest.fixture(scope="module")
def connector_wheel(tmp_path_factory) -> Path:
    return _wheel(DISTRIBUTION_SOURCES, ".", tmp_path_factory.mktemp("connector-wheel"), "airbyte_mistral-*.whl")


@pytest.fixture(scope="module")
def emulator_wheel(tmp_path_factory) -> Path:
    return _wheel(
        ["emulator/pyproject.toml", "mistral_emulator"],
        "emulator",
        tmp_path_factory.mktemp("emulator-wheel"),
        "mistral_emulator-*.whl",
    )


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory, connector_wheel: Path) -> Path:
    work = tmp_path_factory.mktemp("wheel-install")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(
        subprocess.check_output(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # Install the wheel itself; its dependencies come from this test run's environment (a plain
    # path line, so that environment's editable finder for this repo is not loaded).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site_packages),
            str(connector_wheel),
        ],
        check=True,
        capture_output=True,
    )
    (site_packages / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(venv: Path, module: str, *args: str, cwd: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import sys; from {module} import run; sys.argv[0] = '{module}'; run()",
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_installed_wheel_carries_spec_manifest_and_schemas(installed_venv: Path, tmp_path: Path):
    probe = subprocess.run(
        [
            str(installed_venv / "bin" / "python"),
            "-c",
            "import source_mistral, mistral_connection; "
            "print(source_mistral.__file__); print(mistral_connection.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(REPO) not in probe.stdout, f"the installed package must not be the checkout: {probe.stdout}"
    site = Path(probe.stdout.splitlines()[1]).parent
    assert (site / "spec.yaml").is_file(), "spec.yaml must be packaged inside mistral_connection"

    spec = next(m for m in _run(installed_venv, "source_mistral.run", "spec", cwd=tmp_path) if m["type"] == "SPEC")
    assert list(spec["spec"]["connectionSpecification"]["properties"])[:3] == ["api_key", "model", "base_url"]

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_key": "k", "base_url": "http://127.0.0.1:9"}))
    catalog = next(
        m
        for m in _run(installed_venv, "source_mistral.run", "discover", "--config", str(config), cwd=tmp_path)
        if m["type"] == "CATALOG"
    )
    names = {s["name"] for s in catalog["catalog"]["streams"]}
    assert names == {"models", "files", "batch_jobs", "fine_tuning_jobs", "agents", "batch_job_results"}
    files = next(s for s in catalog["catalog"]["streams"] if s["name"] == "files")
    assert "created_at" in files["json_schema"]["properties"], "stream schemas must be packaged"


def _console_scripts(wheel: Path) -> set[str]:
    entry_points = _wheel_metadata(wheel, "entry_points.txt")
    section = entry_points.split("[console_scripts]", 1)[1].split("\n[", 1)[0]
    return {line.split("=", 1)[0].strip() for line in section.splitlines() if "=" in line}


def test_each_wheel_declares_its_own_console_scripts(connector_wheel: Path, emulator_wheel: Path):
    assert _console_scripts(connector_wheel) == {"source-mistral", "destination-mistral"}
    assert _console_scripts(emulator_wheel) == {"mistral-emulator"}


def test_connector_wheel_carries_no_emulator_tools_or_test_code(connector_wheel: Path):
    with zipfile.ZipFile(connector_wheel) as archive:
        names = archive.namelist()
    assert set(_wheel_metadata(connector_wheel, "top_level.txt").split()) == CONNECTOR_PACKAGES
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == CONNECTOR_PACKAGES
    assert not [n for n in names if DEVELOPMENT_ONLY.search(n)]


def test_installed_connector_distribution_has_no_emulator_tools_or_test_code(installed_venv: Path, tmp_path: Path):
    probe = subprocess.run(
        [
            str(installed_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, importlib.util as u, json; "
            "print(json.dumps({'files': [str(f) for f in m.distribution('airbyte-mistral').files], "
            "'importable': [n for n in ('mistral_emulator', 'tools', 'tests', 'destination_mistral.demo', "
            "'destination_mistral.bench', 'destination_mistral.testing') if u.find_spec(n) is not None]}))",
        ],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=True,
    )
    installed = json.loads(probe.stdout)
    assert installed["files"] and not [f for f in installed["files"] if DEVELOPMENT_ONLY.search(f)]
    assert installed["importable"] == []


def test_emulator_wheel_is_the_emulator_alone(emulator_wheel: Path):
    with zipfile.ZipFile(emulator_wheel) as archive:
        names = archive.namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"mistral_emulator"}
    assert "mistral_emulator/cli.py" in names and "mistral_emulator/NOTES.md" in names


@pytest.mark.parametrize("connector", sorted(PACKAGES))
def test_connector_images_copy_their_own_package_and_no_emulator_or_tools(connector: str):
    own = {"setup.py", "README.md", "spec.yaml", "mistral_connection", PACKAGES[connector]}
    # The source installs only its own requirements (setup.py's are both connectors').
    extra = {f"connectors/{connector}/requirements.txt"} if connector == "source-mistral" else set()
    assert set(_copied_by_the_image(connector)) == own | extra
    ignore = (REPO / "connectors" / connector / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    let_in = {line[1:].removesuffix("/**") for line in ignore.splitlines() if line.startswith("!")}
    assert let_in == own | extra


@pytest.mark.parametrize("connector", sorted(PACKAGES))
def test_a_wheel_built_from_an_images_copies_holds_that_connector_alone(connector: str, tmp_path: Path):
    wheel = _wheel(_copied_by_the_image(connector), ".", tmp_path, "airbyte_mistral-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {n.split("/")[0] for n in archive.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"mistral_connection", PACKAGES[connector]}
    with zipfile.ZipFile(wheel) as archive:
        assert "mistral_connection/spec.yaml" in archive.namelist(), "the credential block travels with the image"

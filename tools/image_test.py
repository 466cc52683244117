"""Build the connector images for real, sync through them against the emulator, and say where their
size goes.

Each image is built from its own Dockerfile with `--build-arg BASE_IMAGE=<local base>`. No image
registry is reachable on these machines, so the base is made here: a Debian bookworm
`debootstrap --variant=minbase` root with python3 and python3-venv, shaped like Airbyte's
python-connector-base (Python and pip in /usr/local, an `airbyte` user), then `podman import`ed.

`podman run` cannot set resource limits in this sandbox, so the images are not started by podman:
the test creates a container from each image (`podman create`, which gives the writable root a
container has), mounts its root filesystem and runs the entrypoint there with `chroot`, as the
image's user, with the image's environment, in a private mount namespace that also holds /proc,
/dev, the configs at /config and a host directory at /local (as Airbyte mounts its local root).
chroot shares the host's network, as `--network host` would: the connectors reach the Mistral
emulator that this script serves on loopback from the project's virtualenv.

What runs inside the images: `spec`, `check` (and `check` with a wrong key, which must fail without
printing it), the source's `discover` and a `read` of every stream whose records are compared with
what the emulator's API lists, and the destination's `write` in chat and in embeddings mode into a
DuckDB file under /local whose rows are then counted.

    python tools/image_test.py               # as root; installs podman and debootstrap if missing
    python tools/image_test.py --rebuild-base
    python tools/image_test.py --skip-build  # test the images already built

Takes a few minutes (debootstrap the first time, two pip installs); the base image is reused after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mistral_emulator.server import EmulatorProcess
from mistral_emulator.settings import EmulatorSettings

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/airbyte-mistral/python-connector-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CONNECTORS = ("source-mistral", "destination-mistral")
PACKAGES = {"source-mistral": "source_mistral", "destination-mistral": "destination_mistral"}
# Where the Dockerfiles install each connector (a virtualenv of its own on top of the base image).
CONNECTOR_ENV = Path("/opt/connector")
# The emulator accepts the key it is started with; this one never leaves the machine.
EMULATOR_KEY = "image-test-key"
# A small account, so that a read of every stream takes seconds; agents span several pages.
ACCOUNT = EmulatorSettings(files=40, batch_jobs=12, agents=25, fine_tuning_jobs=4, batch_queue_seconds=0.2)
# The source's list streams and the API path that lists the same records; batch_job_results is
# checked against a batch job this test runs first.
LISTED_STREAMS = {
    "models": "models",
    "files": "files",
    "batch_jobs": "batch/jobs",
    "fine_tuning_jobs": "fine_tuning/jobs",
    "agents": "agents",
}
RESULTS_STREAM = "batch_job_results"
REVIEWS = 25
MB = 1_000_000  # podman reports sizes in decimal megabytes


@dataclass
class Outcome:
    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str = "", seconds: float = 0.0) -> bool:
        self.outcomes.append(Outcome(name, ok, detail, seconds))
        mark = "PASS" if ok else "FAIL"
        print(f"[{mark}] {name} ({seconds:.1f}s){': ' + detail if detail else ''}", flush=True)
        return ok

    def note(self, text: str) -> None:
        """Printed with the summary."""
        self.notes.append(text)


def log(message: str) -> None:
    print(f"--- {message}", flush=True)


def run(cmd: list[str], *, check: bool = True, capture: bool = False, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, **kwargs)


def ensure_tools() -> None:
    missing = [
        tool
        for tool in ("podman", "debootstrap")
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()
    ]
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "podman", "debootstrap"], env=env)


def image_exists(name: str) -> bool:
    return run(["podman", "image", "exists", name], check=False).returncode == 0


def image_id(name: str) -> str | None:
    result = run(["podman", "image", "inspect", "--format", "{{.Id}}", name], check=False, capture=True)
    return result.stdout.strip() or None if result.returncode == 0 else None


def image_size(name: str) -> int:
    return int(run(["podman", "image", "inspect", "--format", "{{.Size}}", name], capture=True).stdout.strip())


def dangling_images() -> set[str]:
    out = run(["podman", "images", "--quiet", "--no-trunc", "--filter", "dangling=true"], capture=True).stdout
    return set(out.split())


def drop_superseded(name: str, previous: str | None) -> None:
    """A rebuilt tag leaves its old image dangling (hundreds of MB per run): remove that one only."""
    if previous and previous != image_id(name):
        run(["podman", "rmi", previous], check=False, capture=True)


# Runs inside the debootstrapped root. A virtualenv *at* /usr/local gives `python`/`pip` in
# /usr/local/bin, as in the official base (built on the python image); Debian's own python3 stays
# untouched (and its pip refusal for system installs does not apply).
BASE_SETUP = r"""
set -eu
update-ca-certificates >/dev/null
python3 -m venv /usr/local
/usr/local/bin/python -m pip --version >/dev/null
ln -snf /usr/share/zoneinfo/Etc/UTC /etc/localtime
groupadd --gid 1000 airbyte
useradd --uid 1000 --gid airbyte --shell /bin/bash --create-home airbyte
mkdir -p /airbyte/integration_code
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
"""


def build_base_image(work: Path) -> None:
    rootfs = work / "rootfs"
    log(f"debootstrap --variant=minbase bookworm (python3, python3-venv) into {rootfs}")
    run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            DEBIAN_MIRROR,
        ],
        stdout=subprocess.DEVNULL,
    )
    # The host's resolver, only for pip during `podman build`; removed again before import.
    shutil.copy("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    # This machine reaches the package registries through a TLS-inspecting egress proxy whose CA
    # is in the host's trust store only: without it, pip in `podman build` fails certificate checks.
    # The image is local-only, so it carries the host's extra CAs and pip uses the system store.
    extra_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    target = rootfs / "usr" / "local" / "share" / "ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for ca in extra_cas:
        shutil.copy(ca, target / ca.name)
    (rootfs / "etc" / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    run(["chroot", str(rootfs), "/bin/bash", "-c", BASE_SETUP])
    (rootfs / "etc" / "resolv.conf").unlink()
    log(f"podman import -> {BASE_IMAGE}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    run(
        [
            "podman",
            "import",
            "--change",
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            "WORKDIR /airbyte/integration_code",
            "--change",
            "LABEL io.airbyte.base_image_origin=debootstrap-bookworm-minbase",
            "--message",
            "local stand-in for airbyte/python-connector-base",
            "-",
            BASE_IMAGE,
        ],
        stdin=tar.stdout,
        stdout=subprocess.DEVNULL,
    )
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)


def build_connector(name: str) -> tuple[bool, str]:
    connector_dir = REPO / "connectors" / name
    cmd = [
        "podman",
        "build",
        "--isolation",
        "chroot",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-f",
        str(connector_dir / "Dockerfile"),
        "-t",
        f"airbyte/{name}:dev",
    ]
    ignore = connector_dir / "Dockerfile.dockerignore"
    if ignore.exists():
        cmd += ["--ignorefile", str(ignore)]
    cmd.append(str(REPO))
    before = dangling_images()
    result = run(cmd, check=False, capture=True)
    # The builder stage and the image the tag pointed to before are left untagged, several hundred
    # MB each: remove those this build left, and no other dangling image.
    for left in sorted(dangling_images() - before):
        run(["podman", "rmi", left], check=False, capture=True)
    log_file = Path(tempfile.gettempdir()) / f"image-test-build-{name}.log"
    log_file.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        return False, f"podman build failed (full log: {log_file})\n{tail}"
    return True, f"airbyte/{name}:dev (log: {log_file})"


def image_config(image: str) -> dict:
    out = run(["podman", "image", "inspect", image], capture=True).stdout
    return json.loads(out)[0].get("Config", {})


class Container:
    """A container made from the image (not started: its root is mounted), and a way to run its
    entrypoint there with /config and /local bound to host directories."""

    def __init__(self, image: str, config_dir: Path, local_dir: Path) -> None:
        self.image = image
        self.config_dir = config_dir
        self.local_dir = local_dir
        self.config = image_config(image)
        self.id = ""
        self.root: Path | None = None
        # Top-level modules the entrypoint imported, over every run: what of the image is used.
        self.imported: set[str] = set()

    def __enter__(self) -> Container:
        self.id = run(["podman", "create", self.image], capture=True).stdout.strip()
        self.root = Path(run(["podman", "mount", self.id], capture=True).stdout.strip())
        return self

    def __exit__(self, *exc) -> None:
        run(["podman", "umount", self.id], check=False, capture=True)
        run(["podman", "rm", "--force", self.id], check=False, capture=True)

    def entrypoint(self, *args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        # Python lists each import on stderr ("import time: ... | module"); those lines are taken out.
        result = self.run(
            [*(self.config.get("Entrypoint") or []), *args],
            stdin=stdin,
            timeout=timeout,
            env=["PYTHONPROFILEIMPORTTIME=1"],
        )
        kept = []
        for line in result.stderr.splitlines():
            if line.startswith("import time:"):
                self.imported.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
            else:
                kept.append(line)
        result.stderr = "\n".join(kept)
        return result

    def run(
        self, command: list[str], stdin: str | None = None, timeout: float = 180, env: list[str] | None = None
    ) -> subprocess.CompletedProcess:
        assert self.root is not None
        user = self.config.get("User") or "root"
        environment = [e for e in self.config.get("Env") or [] if not e.startswith("HOME=")] + ["HOME=/tmp"]
        environment += env or []
        inner = (
            'set -e; root="$1"; config="$2"; local="$3"; user="$4"; shift 4; '
            "mount --make-rprivate /; "
            'mount -t proc proc "$root/proc"; '
            'mount --rbind /dev "$root/dev"; '
            'mkdir -p "$root/config" "$root/local"; '
            'mount --bind "$config" "$root/config"; '
            'mount --bind "$local" "$root/local"; '
            'exec chroot --userspec="$user:$user" "$root" /usr/bin/env -i "$@"'
        )
        cmd = ["unshare", "--mount", "--fork", "/bin/sh", "-c", inner, "sh"]
        cmd += [str(self.root), str(self.config_dir), str(self.local_dir), user, *environment, *command]
        return run(cmd, check=False, capture=True, timeout=timeout, input=stdin)


# ---- what the image holds -------------------------------------------------------------------------


def site_packages(root: Path) -> list[Path]:
    return sorted(
        site
        for prefix in (CONNECTOR_ENV, Path("/usr/local"))
        for site in (root / prefix.relative_to("/")).glob("lib/python3*/site-packages")
    )


def development_only(root: Path) -> list[str]:
    """What of the repository's development code (the emulator, the tools, the test builders) an
    image's root filesystem holds; the connector images must hold none of it."""
    found = [
        str(p.relative_to(root))
        for prefix in (CONNECTOR_ENV, Path("/usr/local"))
        for p in (root / prefix.relative_to("/") / "bin").glob("mistral-emulator*")
    ]
    for site in site_packages(root):
        found += [
            str(p.relative_to(root)) for pattern in ("mistral_emulator*", "tools", "tests") for p in site.glob(pattern)
        ]
        for package in ("mistral_connection", *PACKAGES.values()):
            found += [
                str(p.relative_to(root))
                for p in (site / package).rglob("*.py")
                if p.name in ("demo.py", "bench.py", "testing.py")
            ]
    return sorted(found)


def test_extras() -> set[str]:
    """The distributions the project's test and benchmark extras name: none may be in an image."""
    names = set()
    for line in importlib_metadata.distribution("airbyte-mistral").requires or []:
        requirement = Requirement(line)
        if requirement.marker and "extra" in str(requirement.marker):
            names.add(canonicalize_name(requirement.name))
    return names


@dataclass
class Distribution:
    name: str
    size: int
    bytecode: int
    requirements: list[Requirement]
    modules: set[str]

    def requires(self, extras: Iterable[str] = ()) -> list[Requirement]:
        """What it needs at run time, with the given extras (psycopg[binary] brings psycopg-binary)."""
        environments = [{"extra": extra} for extra in ("", *extras)]
        return [r for r in self.requirements if r.marker is None or any(map(r.marker.evaluate, environments))]


def installed(site: Path) -> dict[str, Distribution]:
    """Every distribution in a site-packages directory, with the bytes of its files still there."""
    found = {}
    for info in site.glob("*.dist-info"):
        meta = importlib_metadata.PathDistribution(info)
        size = bytecode = 0
        modules = set()
        for entry in meta.files or []:
            path = site / entry
            if path.is_file() and not path.is_symlink():
                size += path.stat().st_size
                bytecode += path.stat().st_size if path.suffix == ".pyc" else 0
            top = entry.parts[0]
            if top not in ("..", "__pycache__") and not top.endswith((".dist-info", ".libs", ".pth")):
                modules.add(top.split(".")[0])  # a package, a module.py or an extension module.cpython-*.so
        name = canonicalize_name(meta.metadata["Name"])
        requirements = [Requirement(line) for line in meta.requires or []]
        found[name] = Distribution(name, size, bytecode, requirements, modules)
    return found


def reachable(start: Requirement, dists: dict[str, Distribution]) -> set[str]:
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [start]
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen or key[0] not in dists:
            continue
        seen.add(key)
        todo += dists[key[0]].requires(requirement.extras)
    return {name for name, _ in seen}


def size_report(name: str, root: Path, imported: set[str]) -> list[str]:
    """Where the connector's layer goes: each requirement of the connector that no other one brings
    in, with what only it needs, then what several of them share; bytecode counted apart; and what
    the commands run in the image never imported."""
    site = next(s for s in site_packages(root) if str(s).startswith(str(root / CONNECTOR_ENV.relative_to("/"))))
    dists = installed(site)
    project = canonicalize_name("airbyte-mistral")
    direct = [r for r in dists[project].requires() if canonicalize_name(r.name) in dists]
    closures = {canonicalize_name(r.name): reachable(r, dists) for r in direct}
    # A requirement that another one brings in anyway (numpy, with pandas under the CDK) costs nothing
    # of its own: it is counted with what brings it.
    roots = [r for r in closures if not any(r in c for other, c in closures.items() if other != r)]
    owners: dict[str, set[str]] = {}
    for root_name in roots:
        for dist in closures[root_name]:
            owners.setdefault(dist, set()).add(root_name)
    # The virtualenv's python is a symlink into the base image: not counted.
    layer = sum(
        p.lstat().st_size
        for p in (root / CONNECTOR_ENV.relative_to("/")).rglob("*")
        if p.is_file() and not p.is_symlink()
    )
    total = image_size(f"airbyte/{name}:dev")
    base = image_size(BASE_IMAGE)
    bytecode = sum(d.bytecode for d in dists.values())
    lines = [
        f"{name}: image {total / MB:.0f} MB = base {base / MB:.0f} MB + connector {layer / MB:.0f} MB "
        f"(of which bytecode {bytecode / MB:.0f} MB); {len(dists)} distributions"
    ]

    def row(label: str, members: Iterable[str]) -> str:
        members = sorted(members, key=lambda m: -dists[m].size)
        size = sum(dists[m].size for m in members)
        top = ", ".join(f"{m} {dists[m].size / MB:.0f}" for m in members[:6] if dists[m].size >= MB / 2)
        shown = f"{size / MB:4.0f}" if size >= MB else "  <1"
        return f"  {label:<44} {shown} MB  {top}"

    groups = [(r, [d for d, o in owners.items() if o == {r}]) for r in roots]
    groups.append(("shared by several of the above", [d for d, o in owners.items() if len(o) > 1]))
    groups.append(("the connector's own package", [project]))
    groups.append(("none of the above", [d for d in dists if d not in owners and d != project]))
    for label, members in sorted(groups, key=lambda g: -sum(dists[m].size for m in g[1])):
        if members:
            lines.append(row(label if " " in label else f"{label} and what only it needs", members))
    unused = [d for d in dists if d != project and not dists[d].modules & imported]
    lines.append(row("never imported by the commands run here", unused))
    return lines


def check_contents(name: str, root: Path, report: Report) -> None:
    strays = development_only(root)
    report.add(f"{name}: no emulator, tools or test code in the image", not strays, ", ".join(strays[:5]))
    present = {n for site in site_packages(root) for n in installed(site)}
    extras = sorted(present & test_extras())
    report.add(f"{name}: none of the test or benchmark dependencies", not extras, ", ".join(extras))
    other = next(c for c in CONNECTORS if c != name)
    carried = [
        str(p.relative_to(root))
        for p in [root / CONNECTOR_ENV.relative_to("/") / "bin" / other]
        + [site / PACKAGES[other] for site in site_packages(root)]
        if p.exists()
    ]
    report.add(f"{name}: none of {other}", not carried, ", ".join(carried))


# Modules whose import pulls in most of what each connector runs.
ENTRY_MODULES = {
    "source-mistral": "source_mistral.source",
    "destination-mistral": "destination_mistral.destination, destination_mistral.sync.runner",
}


def check_bytecode(name: str, container: Container, report: Report) -> None:
    """The image keeps the bytecode pip compiled so that a start need not compile: it must be valid
    for the sources next to it, or Python compiles every module again, in memory, on every start."""
    started = time.monotonic()
    result = container.run([str(CONNECTOR_ENV / "bin" / "python"), "-v", "-c", f"import {ENTRY_MODULES[name]}"])
    loads = [
        line.rstrip("'")
        for line in result.stderr.splitlines()
        if line.startswith(f"# code object from '{CONNECTOR_ENV}/")
    ]
    compiled = [line.rsplit("/", 1)[-1] for line in loads if line.endswith(".py")]
    report.add(
        f"{name}: imports load the image's bytecode",
        result.returncode == 0 and bool(loads) and not compiled,
        f"{len(loads) - len(compiled)} modules from bytecode, {len(compiled)} compiled at start {compiled[:3]}"
        if result.returncode == 0
        else _failure(result),
        time.monotonic() - started,
    )


# ---- running the connectors -----------------------------------------------------------------------


def messages(stdout: str) -> list[dict]:
    found = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return found


def first(msgs: list[dict], kind: str) -> dict | None:
    return next((m for m in msgs if m.get("type") == kind), None)


def errors(msgs: list[dict]) -> list[str]:
    return [
        m["trace"]["error"].get("message", "")
        for m in msgs
        if m.get("type") == "TRACE" and m["trace"].get("type") == "ERROR"
    ]


def _failure(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or result.stdout or "").strip().splitlines()
    return f"exit {result.returncode}: " + (" | ".join(text[-5:]) if text else "no output")


class Account:
    """The emulator's API as a careful client sees it, to compare the connectors' output with."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {EMULATOR_KEY}"

    def ids(self, path: str) -> list[str]:
        """Every page until a short one or `total`."""
        ids: list[str] = []
        page, size = 0, 100
        while True:
            response = self.session.get(
                f"{self.base_url}/v1/{path}", params={"page": page, "page_size": size}, timeout=10
            )
            response.raise_for_status()
            body = response.json()
            items = body["data"] if isinstance(body, dict) else body
            ids += [item["id"] for item in items]
            if len(items) < size or (isinstance(body, dict) and "total" in body and len(ids) >= body["total"]):
                return ids
            page += 1

    def finished_batch_job(self, custom_ids: list[str]) -> str:
        lines = "\n".join(json.dumps({"custom_id": c, "body": {"input": f"text {c}"}}) for c in custom_ids)
        upload = self.session.post(
            f"{self.base_url}/v1/files",
            files={"file": ("image-test.jsonl", lines.encode(), "application/jsonl")},
            data={"purpose": "batch"},
            timeout=10,
        )
        upload.raise_for_status()
        job = self.session.post(
            f"{self.base_url}/v1/batch/jobs",
            json={"input_files": [upload.json()["id"]], "endpoint": "/v1/embeddings", "model": "mistral-embed"},
            timeout=10,
        ).json()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.session.get(f"{self.base_url}/v1/batch/jobs/{job['id']}", timeout=10).json()["status"]
            if status == "SUCCESS":
                return job["id"]
            time.sleep(0.2)
        raise RuntimeError(f"batch job {job['id']} did not finish")


def write_config(directory: Path, name: str, content: dict) -> str:
    path = directory / name
    path.write_text(json.dumps(content))
    path.chmod(0o644)
    return f"/config/{name}"


def spec_and_check(name: str, container: Container, config: dict, report: Report) -> None:
    started = time.monotonic()
    result = container.entrypoint("spec")
    spec = first(messages(result.stdout), "SPEC")
    ok = bool(spec) and "api_key" in spec["spec"]["connectionSpecification"].get("properties", {})
    detail = (
        f"{len(spec['spec']['connectionSpecification']['properties'])} properties, "
        f"documentationUrl={spec['spec'].get('documentationUrl')}"
        if spec
        else _failure(result)
    )
    report.add(f"{name}: spec", ok, detail, time.monotonic() - started)

    started = time.monotonic()
    result = container.entrypoint("check", "--config", write_config(container.config_dir, "check.json", config))
    status = first(messages(result.stdout), "CONNECTION_STATUS")
    ok = bool(status) and status["connectionStatus"]["status"] == "SUCCEEDED"
    detail = "SUCCEEDED" if ok else (json.dumps(status["connectionStatus"]) if status else _failure(result))
    report.add(f"{name}: check against the emulator", ok, detail, time.monotonic() - started)

    # A check that cannot fail proves nothing: the same image must refuse a wrong key, unprinted.
    started = time.monotonic()
    bad = write_config(container.config_dir, "bad_key.json", dict(config, api_key="not-the-key"))
    result = container.entrypoint("check", "--config", bad)
    msgs = messages(result.stdout)
    status = first(msgs, "CONNECTION_STATUS")
    failed = (status and status["connectionStatus"]["status"] == "FAILED") or (not status and errors(msgs))
    message = (status or {}).get("connectionStatus", {}).get("message") or next(iter(errors(msgs)), "")
    leaked = "not-the-key" in result.stdout + result.stderr
    report.add(
        f"{name}: check with a wrong key fails",
        bool(failed) and not leaked,
        ("key printed in output! " if leaked else "") + f"{message}",
        time.monotonic() - started,
    )


def test_source(container: Container, account: Account, report: Report) -> None:
    name = "source-mistral"
    config = {"api_key": EMULATOR_KEY, "model": "mistral-small-latest", "base_url": account.base_url}
    spec_and_check(name, container, config, report)
    config_path = write_config(container.config_dir, "source.json", config)

    started = time.monotonic()
    result = container.entrypoint("discover", "--config", config_path)
    catalog = first(messages(result.stdout), "CATALOG")
    streams = [s for s in (catalog or {}).get("catalog", {}).get("streams", [])]
    names = {s["name"] for s in streams}
    expected = {*LISTED_STREAMS, RESULTS_STREAM}
    report.add(
        f"{name}: discover lists every stream",
        names == expected,
        ", ".join(sorted(names)) if catalog else _failure(result),
        time.monotonic() - started,
    )
    if not streams:
        return

    custom_ids = ["a", "b", "c"]
    job_id = account.finished_batch_job(custom_ids)
    configured = {
        "streams": [{"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"} for s in streams]
    }
    catalog_path = write_config(container.config_dir, "source_catalog.json", configured)
    started = time.monotonic()
    result = container.entrypoint("read", "--config", config_path, "--catalog", catalog_path, timeout=600)
    seconds = time.monotonic() - started
    msgs = messages(result.stdout)
    records: dict[str, list[dict]] = {n: [] for n in names}
    for m in msgs:
        if m.get("type") == "RECORD":
            records.setdefault(m["record"]["stream"], []).append(m["record"]["data"])
    complete = {
        m["trace"]["stream_status"]["stream_descriptor"]["name"]
        for m in msgs
        if m.get("type") == "TRACE"
        and m["trace"].get("type") == "STREAM_STATUS"
        and m["trace"]["stream_status"]["status"] == "COMPLETE"
    }
    problems = [f"exit {result.returncode}"] if result.returncode else []
    problems += [f"error: {e}" for e in errors(msgs)]
    problems += [f"{n} not COMPLETE" for n in sorted(names - complete)]
    for stream, path in LISTED_STREAMS.items():
        got = [r["id"] for r in records.get(stream, [])]
        want = account.ids(path)
        if sorted(got) != sorted(want) or not want:
            problems.append(f"{stream}: {len(got)} records, the API lists {len(want)}")
    results = sorted(r["custom_id"] for r in records.get(RESULTS_STREAM, []) if r.get("job_id") == job_id)
    if results != custom_ids:
        problems.append(f"{RESULTS_STREAM}: {results} for job {job_id}, expected {custom_ids}")
    counts = ", ".join(f"{n} {len(records.get(n, []))}" for n in sorted(names))
    report.add(
        f"{name}: read of every stream matches the API",
        not problems,
        "; ".join(problems[:6]) if problems else f"{sum(map(len, records.values()))} records ({counts})",
        seconds,
    )


REVIEW_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "product": {"type": "string"}, "review": {"type": "string"}},
}


def review_messages() -> str:
    products = ("headphones", "phone", "charger", "speaker", "laptop")
    lines = [
        {
            "type": "RECORD",
            "record": {
                "stream": "reviews",
                "data": {"id": i, "product": products[i % 5], "review": f"Review {i}: the battery lasts {i} hours."},
                "emitted_at": 1_700_000_000_000 + i,
            },
        }
        for i in range(REVIEWS)
    ]
    lines.append(
        {
            "type": "STATE",
            "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "reviews"}, "stream_state": {"n": 1}}},
        }
    )
    return "\n".join(json.dumps(line) for line in lines) + "\n"


# Run with the image's own interpreter: the DuckDB that wrote the file reads it back.
COUNT_ROWS = """
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
column = sys.argv[2]
rows, with_result, with_error, ids = con.execute(
    f"SELECT count(*), count({column}), count(_mistral_error), count(DISTINCT id) FROM main.reviews"
).fetchone()
print(json.dumps({"rows": rows, "with_result": with_result, "with_error": with_error, "ids": ids}))
"""


def test_destination(container: Container, account: Account, report: Report) -> None:
    name = "destination-mistral"
    credentials = {"api_key": EMULATOR_KEY, "base_url": account.base_url}
    embeddings = {"mode": "embeddings", "model": "mistral-embed", "fields": ["product", "review"]}
    check_config = dict(credentials, enrichment=embeddings, output={"type": "duckdb", "path": "/local/check.duckdb"})
    spec_and_check(name, container, check_config, report)

    catalog = {
        "streams": [
            {
                "stream": {"name": "reviews", "json_schema": REVIEW_SCHEMA, "supported_sync_modes": ["full_refresh"]},
                "sync_mode": "full_refresh",
                "destination_sync_mode": "append",
                "primary_key": [["id"]],
            }
        ]
    }
    catalog_path = write_config(container.config_dir, "destination_catalog.json", catalog)
    chat = {
        "mode": "chat",
        "prompt_template": "In five words, how does {{ product }} do? {{ review }}",
        "max_tokens": 32,
    }
    for mode, enrichment, column in (
        ("chat", chat, "_mistral_answer"),
        ("embeddings", embeddings, "_mistral_embedding"),
    ):
        output = f"{mode}.duckdb"
        config = dict(
            credentials,
            model="mistral-small-latest",
            enrichment=enrichment,
            output={"type": "duckdb", "path": f"/local/{output}"},
        )
        config_path = write_config(container.config_dir, f"destination_{mode}.json", config)
        started = time.monotonic()
        result = container.entrypoint(
            "write", "--config", config_path, "--catalog", catalog_path, stdin=review_messages(), timeout=300
        )
        seconds = time.monotonic() - started
        msgs = messages(result.stdout)
        states = [m["state"] for m in msgs if m.get("type") == "STATE"]
        problems = [f"exit {result.returncode}"] if result.returncode else []
        problems += [f"error: {e}" for e in errors(msgs)]
        committed = [s.get("destinationStats", {}).get("recordCount") for s in states]
        if committed != [REVIEWS]:
            problems.append(f"STATE came back with record counts {committed}, expected [{REVIEWS}]")
        if not (container.local_dir / output).is_file():
            problems.append(f"no {output} in the host directory mounted at /local")
        else:
            counted = container.run(
                [str(CONNECTOR_ENV / "bin" / "python"), "-c", COUNT_ROWS, f"/local/{output}", column]
            )
            rows = json.loads(counted.stdout) if counted.returncode == 0 else {}
            expected = {"rows": REVIEWS, "with_result": REVIEWS, "with_error": 0, "ids": REVIEWS}
            if rows != expected:
                problems.append(f"rows in /local/{output}: {rows or _failure(counted)}, expected {expected}")
        report.add(
            f"{name}: write, {mode}",
            not problems,
            "; ".join(problems[:6]) if problems else f"{REVIEWS} rows with {column} in /local/{output}, STATE back",
            seconds,
        )


def test_connector(name: str, account: Account, report: Report) -> None:
    image = f"airbyte/{name}:dev"
    config = image_config(image)
    entry = config.get("Entrypoint") or []
    report.add(
        f"{name}: entrypoint is the console script", entry == [name], f"Entrypoint={entry}, User={config.get('User')}"
    )
    with tempfile.TemporaryDirectory(prefix=f"image-test-{name}-") as tmp:
        config_dir, local_dir = Path(tmp, "config"), Path(tmp, "local")
        config_dir.mkdir()
        local_dir.mkdir()
        local_dir.chmod(0o1777)  # the image's user (uid 1000) writes here, as into Airbyte's local root
        with Container(image, config_dir, local_dir) as container:
            assert container.root is not None
            check_contents(name, container.root, report)
            check_bytecode(name, container, report)
            if name == "source-mistral":
                test_source(container, account, report)
            else:
                test_destination(container, account, report)
            for line in size_report(name, container.root, container.imported):
                report.note(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild-base", action="store_true", help="rebuild the local base image even if it exists")
    parser.add_argument("--skip-build", action="store_true", help="test the images already built")
    parser.add_argument("--connector", choices=CONNECTORS, action="append", help="only this connector (repeatable)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("image_test needs root (debootstrap, podman mount, chroot).", file=sys.stderr)
        return 2

    started = time.monotonic()
    report = Report()
    names = args.connector or list(CONNECTORS)
    ensure_tools()

    if args.rebuild_base or not image_exists(BASE_IMAGE):
        t0 = time.monotonic()
        previous = image_id(BASE_IMAGE)
        with tempfile.TemporaryDirectory(prefix="image-test-base-") as work:
            try:
                build_base_image(Path(work))
                drop_superseded(BASE_IMAGE, previous)
                report.add(f"base image {BASE_IMAGE} built", True, seconds=time.monotonic() - t0)
            except subprocess.CalledProcessError as error:
                report.add(f"base image {BASE_IMAGE} built", False, str(error), time.monotonic() - t0)
                return summary(report, started)
    else:
        log(f"reusing {BASE_IMAGE} (--rebuild-base to make it again)")

    built = []
    for name in names:
        if args.skip_build and image_exists(f"airbyte/{name}:dev"):
            built.append(name)
            continue
        t0 = time.monotonic()
        log(f"podman build --isolation chroot {name}")
        ok, detail = build_connector(name)
        if report.add(f"{name}: image built", ok, detail, time.monotonic() - t0):
            built.append(name)

    if built:
        with EmulatorProcess(api_key=EMULATOR_KEY, settings=ACCOUNT) as emulator:
            log(f"emulator on {emulator.base_url}")
            account = Account(emulator.base_url)
            for name in built:
                test_connector(name, account, report)
    return summary(report, started)


def summary(report: Report, started: float) -> int:
    failed = [o for o in report.outcomes if not o.ok]
    print()
    for note in report.notes:
        print(note)
    print(
        f"image test: {len(report.outcomes) - len(failed)} passed, {len(failed)} failed, "
        f"{time.monotonic() - started:.0f}s"
    )
    for outcome in failed:
        print(f"  FAILED {outcome.name}: {outcome.detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

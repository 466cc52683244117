"""Build the connector images for real, run `spec` and `check` inside them, and check that they hold
none of the emulator, the tools or the test builders.

No image registry is reachable on these machines, so the base image is made locally: a Debian
bookworm `debootstrap --variant=minbase` root with python3 and python3-venv, shaped like Airbyte's
python-connector-base (Python and pip in /usr/local, an `airbyte` user), then `podman import`ed.
Each connector image is built from its own Dockerfile with `--build-arg BASE_IMAGE=<that image>`.

`podman run` cannot set resource limits in this sandbox, so the built images are not run as
containers: each image's root filesystem is mounted (`podman image mount`) and its entrypoint is
run there with `chroot`, as the image's user, with the image's environment, in a private mount
namespace (so /proc, /dev and the scratch directory disappear with the process). chroot shares the
host's network, so the entrypoint reaches the Mistral emulator that this script serves on loopback.

    python tools/image_test.py               # as root; installs podman and debootstrap if missing
    python tools/image_test.py --rebuild-base

Takes a few minutes the first time (debootstrap, pip installs); the base image is reused after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/airbyte-mistral/python-connector-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CONNECTORS = ("source-mistral", "destination-mistral")
# The emulator accepts any key it is started with; this one never leaves the machine.
EMULATOR_KEY = "image-test-key"


@dataclass
class Outcome:
    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str = "", seconds: float = 0.0) -> bool:
        self.outcomes.append(Outcome(name, ok, detail, seconds))
        mark = "PASS" if ok else "FAIL"
        print(f"[{mark}] {name} ({seconds:.1f}s){': ' + detail if detail else ''}", flush=True)
        return ok


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


def drop_superseded(name: str, previous: str | None) -> None:
    """A rebuilt tag leaves its old image dangling (hundreds of MB per run): remove that one only."""
    if previous and previous != image_id(name):
        run(["podman", "rmi", previous], check=False, capture=True)


# Runs inside the debootstrapped root. A virtualenv *at* /usr/local gives `python`/`pip` in
# /usr/local/bin and packages under /usr/local/lib, as in the official base (built on the python
# image), so the Dockerfiles' `COPY --from=builder /usr/local /usr/local` works unchanged; Debian's
# own python3 stays untouched (and its pip refusal for system installs does not apply).
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
    result = run(cmd, check=False, capture=True)
    log_file = Path(tempfile.gettempdir()) / f"image-test-build-{name}.log"
    log_file.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        return False, f"podman build failed (full log: {log_file})\n{tail}"
    return True, f"airbyte/{name}:dev (log: {log_file})"


def image_config(image: str) -> dict:
    out = run(["podman", "image", "inspect", image], capture=True).stdout
    return json.loads(out)[0].get("Config", {})


class MountedImage:
    """The image's root filesystem, mounted read-only, and a way to run its entrypoint there."""

    def __init__(self, image: str, scratch: Path) -> None:
        self.image = image
        self.scratch = scratch
        self.config = image_config(image)
        self.root: Path | None = None

    def __enter__(self) -> MountedImage:
        self.root = Path(run(["podman", "image", "mount", self.image], capture=True).stdout.strip())
        return self

    def __exit__(self, *exc) -> None:
        run(["podman", "image", "unmount", self.image], check=False, capture=True)

    def run_entrypoint(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        assert self.root is not None
        entrypoint = self.config.get("Entrypoint") or []
        user = self.config.get("User") or "root"
        env = [e for e in self.config.get("Env") or [] if not e.startswith("HOME=")] + ["HOME=/tmp"]
        inner = (
            'set -e; root="$1"; scratch="$2"; user="$3"; shift 3; '
            "mount --make-rprivate /; "
            'mount -t proc proc "$root/proc"; '
            'mount --rbind /dev "$root/dev"; '
            'mount --bind "$scratch" "$root/tmp"; '
            'exec chroot --userspec="$user:$user" "$root" /usr/bin/env -i "$@"'
        )
        cmd = [
            "unshare",
            "--mount",
            "--fork",
            "/bin/sh",
            "-c",
            inner,
            "sh",
            str(self.root),
            str(self.scratch),
            user,
            *env,
            *entrypoint,
            *args,
        ]
        return run(cmd, check=False, capture=True, timeout=timeout)


CONNECTOR_PACKAGES = ("mistral_connection", "source_mistral", "destination_mistral")
DEVELOPMENT_ONLY_MODULES = ("demo.py", "bench.py", "testing.py")


def development_only(root: Path) -> list[str]:
    """What of the repository's development code (the emulator, the tools, the test builders) an
    image's root filesystem holds; the connector images must hold none of it."""
    found = [str(p.relative_to(root)) for p in (root / "usr" / "local" / "bin").glob("mistral-emulator*")]
    for site in (root / "usr" / "local" / "lib").glob("python3*/site-packages"):
        found += [
            str(p.relative_to(root)) for pattern in ("mistral_emulator*", "tools", "tests") for p in site.glob(pattern)
        ]
        for package in CONNECTOR_PACKAGES:
            found += [
                str(p.relative_to(root)) for p in (site / package).rglob("*.py") if p.name in DEVELOPMENT_ONLY_MODULES
            ]
    return sorted(found)


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


def start_emulator() -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).parent / "mistral-emulator"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mistral_emulator"]
    proc = subprocess.Popen(
        cmd + ["--host", "127.0.0.1", "--port", "0", "--api-key", EMULATOR_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError("the emulator did not start")


def configs(base_url: str) -> dict[str, dict]:
    return {
        "source-mistral": {"api_key": EMULATOR_KEY, "model": "mistral-small-latest", "base_url": base_url},
        "destination-mistral": {
            "api_key": EMULATOR_KEY,
            "base_url": base_url,
            "enrichment": {"mode": "embeddings", "model": "mistral-embed", "fields": ["review"]},
            "output": {"type": "duckdb", "path": "/tmp/destination-check/output.duckdb"},
        },
    }


def test_connector(name: str, base_url: str, report: Report) -> None:
    image = f"airbyte/{name}:dev"
    config = image_config(image)
    entry = config.get("Entrypoint") or []
    report.add(
        f"{name}: entrypoint is the console script", entry == [name], f"Entrypoint={entry}, User={config.get('User')}"
    )

    with tempfile.TemporaryDirectory(prefix=f"image-test-{name}-") as tmp:
        scratch = Path(tmp)
        scratch.chmod(0o1777)  # the image's user (uid 1000) writes here
        good = configs(base_url)[name]
        (scratch / "config.json").write_text(json.dumps(good))
        (scratch / "bad_key.json").write_text(json.dumps(dict(good, api_key="not-the-key")))
        for path in scratch.iterdir():
            path.chmod(0o644)

        with MountedImage(image, scratch) as mounted:
            assert mounted.root is not None
            strays = development_only(mounted.root)
            report.add(f"{name}: no emulator, tools or test code in the image", not strays, ", ".join(strays[:5]))

            started = time.monotonic()
            result = mounted.run_entrypoint("spec")
            spec = first(messages(result.stdout), "SPEC")
            ok = bool(spec) and "api_key" in spec["spec"]["connectionSpecification"].get("properties", {})
            detail = (
                (
                    f"{len(spec['spec']['connectionSpecification']['properties'])} properties, "
                    f"documentationUrl={spec['spec'].get('documentationUrl')}"
                )
                if spec
                else _failure(result)
            )
            report.add(f"{name}: spec", ok, detail, time.monotonic() - started)

            started = time.monotonic()
            result = mounted.run_entrypoint("check", "--config", "/tmp/config.json")
            status = first(messages(result.stdout), "CONNECTION_STATUS")
            ok = bool(status) and status["connectionStatus"]["status"] == "SUCCEEDED"
            report.add(
                f"{name}: check against the emulator",
                ok,
                "SUCCEEDED" if ok else (json.dumps(status["connectionStatus"]) if status else _failure(result)),
                time.monotonic() - started,
            )

            # A check that cannot fail proves nothing: the same image must refuse a wrong key.
            started = time.monotonic()
            result = mounted.run_entrypoint("check", "--config", "/tmp/bad_key.json")
            status = first(messages(result.stdout), "CONNECTION_STATUS")
            trace = first(messages(result.stdout), "TRACE")
            failed = (status and status["connectionStatus"]["status"] == "FAILED") or (not status and trace is not None)
            message = (status or {}).get("connectionStatus", {}).get("message") or (
                (trace or {}).get("trace", {}).get("error", {}).get("message")
            )
            leaked = "not-the-key" in result.stdout + result.stderr
            report.add(
                f"{name}: check with a wrong key fails",
                bool(failed) and not leaked,
                ("key printed in output! " if leaked else "") + f"{message}",
                time.monotonic() - started,
            )


def _failure(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or result.stdout or "").strip().splitlines()
    return f"exit {result.returncode}: " + (" | ".join(text[-5:]) if text else "no output")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild-base", action="store_true", help="rebuild the local base image even if it exists")
    parser.add_argument("--skip-build", action="store_true", help="test the images already built")
    parser.add_argument("--connector", choices=CONNECTORS, action="append", help="only this connector (repeatable)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("image_test needs root (debootstrap, podman image mount, chroot).", file=sys.stderr)
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
        previous = image_id(f"airbyte/{name}:dev")
        ok, detail = build_connector(name)
        if ok:
            drop_superseded(f"airbyte/{name}:dev", previous)
        if report.add(f"{name}: image built", ok, detail, time.monotonic() - t0):
            built.append(name)

    if built:
        emulator, base_url = start_emulator()
        log(f"emulator on {base_url}")
        try:
            for name in built:
                test_connector(name, base_url, report)
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
    return summary(report, started)


def summary(report: Report, started: float) -> int:
    failed = [o for o in report.outcomes if not o.ok]
    print()
    print(
        f"image test: {len(report.outcomes) - len(failed)} passed, {len(failed)} failed, "
        f"{time.monotonic() - started:.0f}s"
    )
    for outcome in failed:
        print(f"  FAILED {outcome.name}: {outcome.detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

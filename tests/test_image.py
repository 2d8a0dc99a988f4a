"""The server's image, built and run as a user would: `make image-check` in a freshly baked project.

A few minutes: the build installs torch and the project's dependencies into the image. Nothing is pulled
from an image registry where debootstrap can make the base image instead (a Debian with Python, cached
by the engine as localhost/roadmap-test-python:bookworm for later runs). Where a CPU wheel of torch lies
in TORCH_WHEELS (default /opt/wheels, where this project's machines keep one), the image takes torch from
it, through a package index made in the test; elsewhere from the Dockerfile's default index. The engine
is podman, or docker where podman is missing; the test skips, saying why, where neither runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import PACKAGE, run

BASE = "localhost/roadmap-test-python:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# podman's defaults fail on some VMs (this project's included): file and process limits above the host's hard
# limits, and crun on hybrid cgroups. These two settings are harmless elsewhere.
PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""


def engine_runs(engine: str, env: dict[str, str]) -> bool:
    return bool(shutil.which(engine)) and subprocess.run([engine, "info"], capture_output=True, env=env).returncode == 0


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """The container engine's command and the environment to run it in; skips where none runs."""
    env = dict(os.environ)
    if shutil.which("podman") and shutil.which("runc") and "CONTAINERS_CONF" not in env:
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        conf.write_text(PODMAN_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    for name in ("podman", "docker"):
        if engine_runs(name, env):
            return name, env
    pytest.skip("no container engine runs here: install podman and runc (Debian: apt-get install podman runc)")


def base_image(engine: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    """The build's --build-arg for the base image: a Debian with Python made by debootstrap, or the Dockerfile's."""
    if subprocess.run([engine, "image", "inspect", BASE], capture_output=True, env=env).returncode == 0:
        return ["--build-arg", f"BASE_IMAGE={BASE}"]
    if engine != "podman" or not shutil.which("debootstrap"):
        return []  # the Dockerfile's python:<version>-slim, pulled by the engine
    rootfs = tmp_path / "rootfs"
    packages = "--include=python3,python3-venv,python3-pip,ca-certificates"
    made = subprocess.run(["debootstrap", "--variant=minbase", packages, "bookworm", str(rootfs)], capture_output=True)
    assert made.returncode == 0, made.stderr.decode()[-3000:]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run([engine, "import", "-", BASE], stdin=tar.stdout, capture_output=True, env=env)
    tar.wait()
    assert imported.returncode == 0, imported.stderr.decode()[-3000:]
    shutil.rmtree(rootfs, ignore_errors=True)
    return ["--build-arg", f"BASE_IMAGE={BASE}"]


def torch_index(engine: str, tmp_path: Path) -> list[str]:
    """Build flags that take torch from a local CPU wheel, through a package index made here, where there is one."""
    wheels = sorted(Path(os.environ.get("TORCH_WHEELS", "/opt/wheels")).glob("torch-*+cpu-*.whl"))
    if engine != "podman" or not wheels:  # docker build mounts nothing: the default index, over the network
        return []
    files = tmp_path / "wheels" / "files"
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(files), str(wheels[-1])]
    downloaded = run(download, tmp_path)  # the wheel and what it depends on
    assert downloaded.returncode == 0, downloaded.stderr[-3000:]
    for wheel in files.glob("*.whl"):
        page = tmp_path / "wheels" / "simple" / re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        page.mkdir(parents=True, exist_ok=True)
        with (page / "index.html").open("a") as index:
            index.write(f'<a href="../../files/{wheel.name}">{wheel.name}</a>\n')
    return ["--build-arg", "TORCH_INDEX_URL=file:///wheels/simple", "--volume", f"{tmp_path / 'wheels'}:/wheels:ro"]


@pytest.mark.slow  # builds a container image
def test_the_image_serves_an_exported_int8_model_as_it_is_served_here(bake, engine, tmp_path):
    name, env = engine
    project = bake(tasks=("xor",))
    for command in ("fit", "export"):
        extra = ["--ckpt_path", "best", "--quantize", "int8"] if command == "export" else []
        args = [sys.executable, "-m", PACKAGE, command, "--config", "configs/xor.yaml", *extra]
        done = run([*args, "--trainer.enable_progress_bar", "false"], project)
        assert done.returncode == 0, done.stderr[-3000:]

    flags = ["--format", "docker"] if name == "podman" else []  # podman's default format drops HEALTHCHECK
    flags += base_image(name, env, tmp_path) + torch_index(name, tmp_path)
    if name == "podman" and CA_BUNDLE.is_file():  # pip in the build trusts what pip here trusts
        flags += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    image = f"localhost/image-test-{uuid.uuid4().hex[:8]}"
    make = ["make", "image-check", f"ENGINE={name}", f"IMAGE={image}", f"PYTHON={sys.executable}"]
    start = time.perf_counter()
    try:
        checked = subprocess.run(
            [*make, f"BUILD_FLAGS={' '.join(flags)}"],
            cwd=project,
            env={**env, "PYTHONPATH": str(project / "src")},
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        subprocess.run([name, "rmi", "--force", image], capture_output=True, env=env)
    print(f"make image-check: {time.perf_counter() - start:.0f} s")
    assert checked.returncode == 0, checked.stdout[-5000:] + checked.stderr[-5000:]
    assert "container: /health ok" in checked.stdout
    answers = [line.split(" answers ", 1)[1] for line in checked.stdout.splitlines() if " answers " in line]
    here, served = map(json.loads, answers)
    # The example request is the XOR points (0, 1) and (1, 1): the image answers 1 and 0, as the file does here.
    assert [answer["prediction"] for answer in served] == [answer["prediction"] for answer in here] == [1, 0]
    assert [answer["probability"] for answer in served] == pytest.approx([answer["probability"] for answer in here])
    # The check's container is gone, whatever happened.
    containers = [name, "ps", "--all", "--quiet", "--filter", "name=image-check-"]
    left = subprocess.run(containers, capture_output=True, env=env)
    assert left.returncode == 0 and left.stdout.strip() == b""

"""The generated project's lock: one exact version for every package a project of this template can install.

A generated project installs with `pip install -c constraints.txt -e ".[dev]"` (its README and its CI), so it gets
the versions this template was tested with, not whatever was released on the day it is installed. This script
resolves the requirements of every project the template can write (every task, each logger, every extra; the
same set tools/shadowed_modules.py walks) with pip-compile, once under each Python that cookiecutter.json offers,
into {{cookiecutter.__project_dir}}/constraints/py<X.Y>.txt. The post-generation hook keeps the file of the
project's Python as constraints.txt. What the template tested stays what the projects get: under the template's
own Python every package is held at its version in requirements-dev.txt, so that lock is the set `make test` ran
on; under the other Pythons torch and torchvision are held at the template's pins (requirements-dev.in), and the
rest is the newest that supports that Python. Constraints, not requirements: a project without some task or logger
installs a subset, and the pins of what it does not install are ignored. The pins carry no hashes: pip checks
hashes only when every requirement has them, and a project installs itself (`-e .`), which has none.

    python tools/project_lock.py      # run by `make lock`; needs python3.10 ... python3.13 on PATH
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from shadowed_modules import TEMPLATE, project_requirements

OUTPUT = TEMPLATE / "{{cookiecutter.__project_dir}}" / "constraints"
WORK = TEMPLATE / "build" / "project-lock"


def pinned(name: str) -> str:
    """`name==version` as requirements-dev.txt pins it: the lock tool runs at the version the template tested."""
    match = re.search(rf"^{re.escape(name)}==(\S+)", (TEMPLATE / "requirements-dev.txt").read_text(), re.MULTILINE)
    if match is None:
        sys.exit(f"requirements-dev.txt does not pin {name}: run make lock")
    return f"{name}=={match[1]}"


def tested_pins(version: str) -> list[str]:
    """What the template tested, as `name==version` lines that hold the resolution under Python `version`."""
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":  # requirements-dev.txt was resolved here
        text = (TEMPLATE / "requirements-dev.txt").read_text()
        return re.findall(r"^[\w.-]+==\S+", text, re.MULTILINE)
    text = (TEMPLATE / "requirements-dev.in").read_text()
    return re.findall(r"^torch(?:vision)?==\S+", text, re.MULTILINE)


def lock_for(version: str, requirements: list[str]) -> Path:
    """Resolve the requirements under Python `version` (a venv holding only pip-tools) into constraints/py<v>.txt."""
    interpreter = shutil.which(f"python{version}")
    if interpreter is None or subprocess.run([interpreter, "-c", ""], capture_output=True).returncode != 0:
        sys.exit(f"python{version} does not run here: every Python the template offers needs one to resolve its lock")
    venv = WORK / f"py{version}"
    if not (venv / "bin" / "pip-compile").exists():
        subprocess.run([interpreter, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, pinned("pip"), pinned("pip-tools")], check=True)
    pins, source = WORK / f"tested-py{version}.txt", WORK / f"requirements-py{version}.in"
    pins.write_text("\n".join(tested_pins(version)) + "\n")
    source.write_text(f"-c {pins.name}\n" + "\n".join(requirements) + "\n")
    output = OUTPUT / f"py{version}.txt"
    compile_ = [str(venv / "bin" / "pip-compile"), "--quiet", "--upgrade", "--strip-extras", "--no-annotate"]
    compile_ += ["--no-emit-index-url", "--no-emit-find-links", "--output-file", str(output), str(source)]
    subprocess.run(compile_, check=True, env={**os.environ, "CUSTOM_COMPILE_COMMAND": "make lock"})
    return output


def main() -> None:
    pythons = json.loads((TEMPLATE / "cookiecutter.json").read_text())["python_version"]
    WORK.mkdir(parents=True, exist_ok=True)
    requirements = sorted(project_requirements())
    OUTPUT.mkdir(exist_ok=True)
    for version in sorted(pythons):
        output = lock_for(version, requirements)
        count = sum(1 for line in output.read_text().splitlines() if "==" in line)
        print(f"{output.relative_to(TEMPLATE)}: {count} pinned packages")


if __name__ == "__main__":
    main()

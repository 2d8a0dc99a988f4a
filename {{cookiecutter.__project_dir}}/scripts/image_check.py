"""Run the server's image on an exported model and check that it answers as the same file does on this machine.

    make image-check                          # builds the image first; MODEL=... ENGINE=podman to change
    python scripts/image_check.py --model runs/{{ cookiecutter.__example_task }}/version_0/export/model_int8.onnx

It starts the image (`--engine run`, docker or podman) with the model's folder mounted read-only at /model,
waits for GET /health, sends the task's example request to POST /predict, and compares the answer with the
predictions the same file gives here, through the code `serve` runs (`artifacts.load(...).predict` and the
codec): the labels and every string equal, numbers within --tolerance (another ONNX Runtime release may
round differently). The container is removed at the end, whatever happened. Prints both answers and how long
the server took to come up; exits 1 when the answers differ or the server does not come up.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from {{ cookiecutter.__package }}.artifacts import load

IMAGE = "{{ cookiecutter.__package | replace("_", "-") }}-serve"  # what `make image` builds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def same(served: Any, local: Any, tolerance: float) -> bool:
    if isinstance(served, dict) and isinstance(local, dict):
        return served.keys() == local.keys() and all(same(served[k], local[k], tolerance) for k in local)
    if isinstance(served, list) and isinstance(local, list):
        return len(served) == len(local) and all(same(s, x, tolerance) for s, x in zip(served, local, strict=True))
    if isinstance(local, float) and isinstance(served, int | float) and not isinstance(served, bool):
        return math.isclose(served, local, rel_tol=tolerance, abs_tol=tolerance)
    return type(served) is type(local) and served == local


def get_json(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def wait_for_health(engine: str, name: str, url: str, timeout: float) -> dict[str, Any]:
    """GET /health until it answers 200; fails early when the container has stopped."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get_json(url, timeout=5)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            problem = str(err)
        if not running(engine, name):
            raise SystemExit(f"the container stopped before answering /health; its log:\n{logs(engine, name)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"no answer from {url} in {timeout:.0f} s ({problem}); the log:\n{logs(engine, name)}")
        time.sleep(0.5)


def running(engine: str, name: str) -> bool:
    inspected = subprocess.run([engine, "inspect", name], capture_output=True, text=True)
    return inspected.returncode == 0 and json.loads(inspected.stdout)[0]["State"]["Running"] is True


def logs(engine: str, name: str) -> str:
    return subprocess.run([engine, "logs", name], capture_output=True, text=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an exported file: model.onnx, model_int8.onnx, ...")
    parser.add_argument("--image", default=IMAGE, help=f"the image to run (default: {IMAGE}; build it: make image)")
    parser.add_argument("--engine", default=shutil.which("docker") or shutil.which("podman"), help="docker or podman")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for /health (default: 180)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="for numbers (default: 1e-5)")
    args = parser.parse_args(argv)
    if not args.engine:
        parser.error("no container engine: install docker or podman, or name one with --engine")
    model = args.model.resolve()
    if not model.is_file():
        parser.error(f"--model {args.model}: no such file; `export --ckpt_path best --quantize int8` writes one")

    trained = load(model)
    codec = trained.codec
    expected = trained.answers(trained.predict(codec.example_inputs()))  # the example request's answer, computed here
    print(f"here: {model.name} answers {json.dumps(expected)}")

    name, port = f"image-check-{uuid.uuid4().hex[:8]}", free_port()
    run = [args.engine, "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8000"]
    run += ["--volume", f"{model.parent}:/model:ro", "--env", f"SERVE_MODEL=/model/{model.name}", args.image]
    start = time.perf_counter()
    try:
        started = subprocess.run(run, capture_output=True, text=True)
        if started.returncode != 0:
            problem = started.stderr.strip()
            parser.exit(1, f"{args.engine} could not start {args.image} (build it: make image): {problem}\n")
        health = wait_for_health(args.engine, name, f"http://127.0.0.1:{port}/health", args.timeout)
        print(f"container: /health {health['status']} after {time.perf_counter() - start:.1f} s")
        served = get_json(f"http://127.0.0.1:{port}/predict", codec.example_request)["predictions"]
        print(f"container: /predict answers {json.dumps(served)}")
    finally:
        subprocess.run([args.engine, "rm", "--force", name], capture_output=True)
    if not same(served, expected, args.tolerance):
        print("the container's answer differs from this machine's", file=sys.stderr)
        return 1
    print("the same answer: the image serves this model as it is served here")
    return 0


if __name__ == "__main__":
    sys.exit(main())

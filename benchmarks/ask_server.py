"""Start a server command, wait for its /health, POST one body to /predict, print the answer, stop the server.

    python benchmarks/ask_server.py --port 8765 --body '{"x": [[0, 1]]}' -- roadmap-project serve --model M --port 8765

`make demo` ends with it; `running_server` is shared with benchmarks/deploy.py. Exits non-zero if the
server does not come up or does not answer 200.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def running_server(command: list[str], port: int, timeout: float = 120, **popen) -> Iterator[subprocess.Popen]:
    """The server `command` started in its own process group, once GET /health answers 200; stopped on exit."""
    server = subprocess.Popen(command, start_new_session=True, **popen)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not come up: {' '.join(command)}")
                time.sleep(0.5)
        yield server
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the whole group: LitServe runs several processes
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def post(url: str, body: str) -> dict:
    request = urllib.request.Request(url, data=body.encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", required=True, help="the JSON body of the POST /predict")
    parser.add_argument("command", nargs="+", help="the server command (after --)")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    with running_server(args.command, args.port):
        with urllib.request.urlopen(f"{base}/health", timeout=30) as response:
            health = json.load(response)
        answer = post(f"{base}/predict", args.body)
    print(f"\nGET /health: {health['status']}, model {health['model_version']}")
    print(f"POST /predict {args.body}\n-> {json.dumps(answer, indent=2)}", flush=True)


if __name__ == "__main__":
    main()

"""Screenshots of the server's playground page for every task, for the generated README (docs/playground/).

Bakes the template with every task, runs the generated project's browser test (tests/test_playground.py: Debian's
chromium and chromium-driver, Selenium) with PLAYGROUND_SCREENSHOTS pointed at the template's
docs/playground/ folder, so each task's page is pictured as the test leaves it: after a typed, drawn, uploaded or
generated input and its answer. The models are the tests' short fits on their small offline data: the pictures
show the page, not the accuracy a trained model reaches.

    python tools/playground_screenshots.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
PICTURES = TEMPLATE / "{{cookiecutter.__project_dir}}" / "docs" / "playground"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp))
        shots = Path(tmp) / "shots"
        env = {**os.environ, "PLAYGROUND_SCREENSHOTS": str(shots), "PYTHONPATH": str(project / "src")}
        test = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_playground.py"]
        done = subprocess.run(test, cwd=project, env=env)
        if done.returncode != 0:
            sys.exit(f"the browser test failed (exit {done.returncode}); the screenshots are left as they were")
        PICTURES.mkdir(parents=True, exist_ok=True)
        for shot in sorted(shots.glob("*.png")):
            shutil.copy(shot, PICTURES / shot.name)
            print(PICTURES.relative_to(TEMPLATE) / shot.name)


if __name__ == "__main__":
    main()

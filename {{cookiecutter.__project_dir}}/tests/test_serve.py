{%- set has_text = cookiecutter.__text_data == "yes" -%}
"""The server, for every config in configs/: it answers what `predict_step` answers, from a checkpoint or an
exported file; it batches concurrent requests; it refuses bad input with a 4xx and keeps serving."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import io
import json
import resource
import select
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from conftest import QUICKEST, TASKS, LiveServer, free_port, launch_env
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field

from {{ cookiecutter.__package }}.artifacts import Trained, load_checkpoint, load_int8, onnx_predict, read_metadata, torch_predict
from {{ cookiecutter.__package }}.data.codec import Codec, Request
from {{ cookiecutter.__package }}.outputs import Outputs
from {{ cookiecutter.__package }}.serve.app import create_app
from {{ cookiecutter.__package }}.serve.app import main as serve_main
from {{ cookiecutter.__package }}.serve.settings import ServeSettings

KINDS = ["checkpoint", "onnx", "int8", "int8_onnx", "pt2"]
FILES = {"onnx": "model.onnx", "int8": "model_int8.pt", "int8_onnx": "model_int8.onnx", "pt2": "model.pt2"}


@pytest.fixture(scope="module")
def artifacts(trained, exported):
    """`artifacts(task, kind)`: the path of the task's checkpoint, or of its export of that kind."""

    def path(task: str, kind: str):
        return trained(task) if kind == "checkpoint" else exported(task) / FILES[kind]

    return path


def client_for(path, **settings) -> TestClient:
    return TestClient(create_app(ServeSettings(model=path, **settings)))


def example_body(task: str, artifacts) -> dict:
    return load_checkpoint(artifacts(task, "checkpoint")).codec.example_request


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", TASKS)
def test_served_prediction_equals_predict_step(artifacts, task, kind):
    trained = load_checkpoint(artifacts(task, "checkpoint"))
    body = trained.codec.example_request
    inputs = trained.codec.encode(trained.codec.request_model(**body).items())  # what the server reads
    path = artifacts(task, kind)
    # An int8 model is its own model: what it serves must equal its own predictions.
    if kind == "int8_onnx":
        expected = onnx_predict(path, threads=1)(inputs)  # the server's threads: the same sums in the same order
    else:
        model = load_int8(path, read_metadata(path)) if kind == "int8" else trained.model
        with torch.no_grad():
            expected = model.predict(*inputs)  # predict_step's outputs, without a target
    with client_for(path) as client:
        response = client.post("/predict", json=body)
        served_file = client.get("/metadata").json()
    assert response.status_code == 200, response.text
    assert (served_file["artifact"], served_file["kind"]) == (path.name, kind)  # int8 ONNX is not reported as ONNX
    served = response.json()["predictions"]
    assert len(served) == len(inputs[0])
    assert_same_answers(served, type(trained.model).outputs.answers(expected, trained.codec.labels))


def assert_same_answers(served, expected) -> None:
    """Answers equal as JSON: numbers within float rounding (1e-5), images (base64 PNG) pixel for pixel within
    float rounding of 1/255, everything else exactly."""
    if isinstance(expected, dict):
        assert served.keys() == expected.keys()
        for key, value in expected.items():
            if key.endswith("_png"):
                ours, theirs = (pixels_of(png) for png in (served[key], value))
                assert np.abs(ours - theirs).max() <= 1 + 1e-6, key
            else:
                assert_same_answers(served[key], value)
    elif isinstance(expected, list):
        assert len(served) == len(expected)
        for ours, theirs in zip(served, expected, strict=True):
            assert_same_answers(ours, theirs)
    elif isinstance(expected, float):
        assert served == pytest.approx(expected, abs=1e-5)
    else:
        assert served == expected


def pixels_of(png: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(png))), dtype=float)


@pytest.mark.parametrize("task", TASKS)
def test_health_runs_a_real_prediction_and_metadata_describes_the_model(artifacts, task):
    with client_for(artifacts(task, "onnx")) as client:
        health, metadata = client.get("/health"), client.get("/metadata")
        docs = client.get("/docs")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    example = health.json()["example"]
    assert len(example["predictions"]) == 2 and example["request"] == example_body(task, artifacts)
    info = metadata.json()
    assert info["task"] == task and (info["artifact"], info["kind"]) == ("model.onnx", "onnx")
    assert info["model_version"] == health.json()["model_version"] and info["model_version"].startswith(task)
    assert info["input_schema"]["properties"] and info["example_request"] == example["request"]
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.mark.parametrize("task", TASKS)
def test_one_input_and_a_batch_answer_alike(artifacts, task):
    body = example_body(task, artifacts)
    if len(body) != 1:
        pytest.skip(f"{task}'s request is not a list of inputs; tests/test_{task}.py checks how it batches")
    ((field, examples),) = body.items()
    with client_for(artifacts(task, "checkpoint")) as client:
        batch = client.post("/predict", json=body).json()["predictions"]
        singles = [client.post("/predict", json={field: one}).json()["predictions"] for one in examples]
    assert [len(single) for single in singles] == [1, 1]
    assert_same_answers(batch, [single for (single,) in singles])


def test_concurrent_requests_share_forward_passes_and_each_gets_its_own_answer(artifacts):
    task = QUICKEST
    body = example_body(task, artifacts)
    ((field, examples),) = body.items()
    bodies = [{field: examples[i % len(examples)]} for i in range(24)]
    app = create_app(ServeSettings(model=artifacts(task, "checkpoint"), max_wait_ms=50))
    with TestClient(app) as client:
        alone = [client.post("/predict", json={field: one}).json()["predictions"][0] for one in examples]
    with LiveServer(app) as server:

        async def send_all():
            async with httpx.AsyncClient(base_url=server.url) as http:
                return await asyncio.gather(*(http.post("/predict", json=b) for b in bodies))

        responses = asyncio.run(send_all())
        batches = scraped(httpx.get(f"{server.url}/metrics").text, "serve_batch_size_bucket")
    assert all(r.status_code == 200 for r in responses)
    for i, response in enumerate(responses):
        assert_same_answers(response.json()["predictions"][0], alone[i % 2])
    assert batches[("1.0",)] < batches[("+Inf",)], "concurrent requests were never batched together"


def png_of(image: Image.Image) -> str:
    """The image as a base64-encoded PNG file: the form /predict takes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def hostile_bodies(task: str, body: dict, max_batch: int) -> list[tuple[str, object, int]]:
    """(what, body, expected status) for bad requests every task must refuse; JSON bodies unless bytes."""
    field = next(iter(body))
    cases = [
        ("malformed JSON", b'{"' + field.encode() + b'": [', 422),
        ("not JSON at all", b"hello", 422),
        ("empty object", {}, 422),
        ("wrong type", {field: {"a": 1}}, 422),
        ("unknown field", {**body, "extra": 1}, 422),
    ]
    if len(body) == 1:  # a list of inputs
        examples = body[field]
        cases += [
            ("empty batch", {field: []}, 422),
            ("batch over the limit", {field: examples[:1] * (max_batch + 1)}, 422),
        ]
{%- if cookiecutter.include_linear_regression == "yes" %}
    if task == "linear_regression":
        cases += [("a string for x", {"x": "two"}, 422), ("NaN", b'{"x": NaN}', 422), ("nested", {"x": [[1.0]]}, 422)]
        cases += [("beyond float32", {"x": 1e39}, 422), ("true for x", {"x": True}, 422)]
{%- endif %}
{%- if cookiecutter.include_xor == "yes" %}
    if task == "xor":
        cases += [("three numbers", {"x": [0, 1, 1]}, 422), ("one number", {"x": [1]}, 422)]
        cases += [("a number beyond float32", {"x": [1e300, 0]}, 422)]
{%- endif %}
{%- if cookiecutter.include_mnist_cnn == "yes" or cookiecutter.include_vit == "yes" %}
    if task in ("mnist_cnn", "vit"):  # the digits' codec
        big = png_of(Image.new("L", (5000, 5000)))  # 25 megapixels: over the limit, a few KB as PNG
        cases += [
            ("pixels of the wrong shape", {"pixels": [[0] * 27] * 28}, 422),
            ("pixel over 255", {"pixels": [[300] * 28] * 28}, 422),
            ("image that is not base64", {"image": "%%% not base64 %%%"}, 422),
            ("base64 of a text file", {"image": base64.b64encode(b"hello").decode()}, 422),
            ("image of 25 megapixels", {"image": big}, 422),
            ("both pixels and image", {"pixels": [[0] * 28] * 28, "image": "abc"}, 422),
            ("image null", {"image": None}, 422),
            ("pixels null beside an image", {"pixels": None, "image": png_of(Image.new("L", (28, 28)))}, 422),
        ]
{%- endif %}
{%- if cookiecutter.include_gan == "yes" %}
    if task == "gan":
        cases += [
            ("count 0", {"seed": 1, "count": 0}, 422),
            ("negative count", {"seed": 1, "count": -3}, 422),
            ("count over the server's batch limit", {"seed": 1, "count": max_batch + 1}, 422),
            ("count over the request limit", {"seed": 1, "count": 10_000}, 422),
            ("count not an integer", {"seed": 1, "count": 2.5}, 422),
            ("count as a string", {"seed": 1, "count": "3"}, 422),
            ("negative seed", {"seed": -1}, 422),
            ("seed out of range", {"seed": 2**31}, 422),
            ("no seed", {"count": 2}, 422),
            ("seed true", {"seed": True}, 422),
        ]
{%- endif %}
{%- if cookiecutter.include_resnet_finetune == "yes" %}
    if task == "resnet_finetune":
        huge = png_of(Image.new("RGB", (5000, 5000)))  # 25 megapixels, a few KB as PNG
        truncated = io.BytesIO()
        Image.new("RGB", (64, 64), (10, 200, 30)).save(truncated, format="PNG")
        cases += [
            ("image that is not base64", {"image": "%%% not base64 %%%"}, 422),
            ("base64 of a text file", {"image": base64.b64encode(b"hello").decode()}, 422),
            ("image of 25 megapixels", {"image": huge}, 422),
            ("truncated PNG", {"image": base64.b64encode(truncated.getvalue()[:80]).decode()}, 422),
        ]
{%- endif %}
{%- if has_text %}
    if task in ("sentiment_rnn", "sentiment_transformer", "bert_finetune"):
        cases += [
            ("empty text", {"text": ""}, 422),
            ("blank text", {"text": "   \n "}, 422),
            ("a blank text in a batch", {"text": ["fine", " "]}, 422),
            ("text of 100,000 characters", {"text": "word " * 20_000}, 422),
            ("a number for text", {"text": 42}, 422),
        ]
{%- endif %}
    return cases


@pytest.mark.parametrize("task", TASKS)
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(artifacts, task):
    body = example_body(task, artifacts)
    with client_for(artifacts(task, "checkpoint"), max_batch_size=8) as client:
        for what, bad, status in hostile_bodies(task, body, max_batch=8):
            if isinstance(bad, bytes):
                response = client.post("/predict", content=bad, headers={"content-type": "application/json"})
            else:
                response = client.post("/predict", json=bad)
            assert response.status_code == status, f"{what}: {response.status_code} {response.text[:300]}"
            assert response.json()["error"], what
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json=body).status_code == 200


{%- if cookiecutter.include_mnist_cnn == "yes" %}


def test_image_files_uploaded_as_multipart_answer_like_their_pixels(artifacts):
    pixels = example_body("mnist_cnn", artifacts)["pixels"]
    files = []
    for digit in pixels:
        buffer = io.BytesIO()
        Image.fromarray(np.array(digit, dtype=np.uint8)).save(buffer, format="PNG")
        files.append(("files", (f"digit{len(files)}.png", buffer.getvalue(), "image/png")))
    with client_for(artifacts("mnist_cnn", "checkpoint"), max_batch_size=2) as client:
        uploaded = client.post("/predict/file", files=files)
        as_pixels = client.post("/predict", json={"pixels": pixels})
        not_an_image = client.post("/predict/file", files=[("files", ("notes.txt", b"hello", "text/plain"))])
        no_file = client.post("/predict/file")
        too_many = client.post("/predict/file", files=files * 2)
    assert uploaded.status_code == 200, uploaded.text
    for ours, theirs in zip(uploaded.json()["predictions"], as_pixels.json()["predictions"], strict=True):
        assert ours["prediction"] == theirs["prediction"]
        assert ours["probability"] == pytest.approx(theirs["probability"], abs=1e-6)
    assert not_an_image.status_code == 422 and "image 1 is not an image file" in not_an_image.text
    assert no_file.status_code == 422 and too_many.status_code == 422
{%- endif %}


IMAGE_TASKS = [task for task in ("mnist_cnn", "resnet_finetune", "vit") if task in TASKS]
needs_images = pytest.mark.skipif(not IMAGE_TASKS, reason="no task here reads image files")


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG file whose header says it is width x height: what a decompression bomb looks like."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")  # IHDR: after the signature, length, type
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def as_images(*files: bytes) -> dict:
    return {"image": [base64.b64encode(file).decode() for file in files]}


@needs_images
def test_images_are_bounded_by_pixels_before_they_are_decoded(artifacts):
    with client_for(artifacts(IMAGE_TASKS[0], "checkpoint")) as client:
        bomb = client.post("/predict", json=as_images(png_declaring(30_000, 30_000)))  # PIL itself calls it a bomb
        many = client.post("/predict", json=as_images(*[png_declaring(4096, 4096)] * 9))  # each allowed, not all
    assert bomb.status_code == 422 and "over the limit" in bomb.json()["error"]
    assert many.status_code == 422 and "pixels together" in many.json()["error"]


@needs_images
def test_a_request_being_decoded_does_not_stall_the_others(artifacts):
    """Decoding runs in worker threads: /health answers while a heavy request is still being decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (4096, 4096), (90, 20, 200)).save(buffer, format="PNG")  # 16.7 megapixels, a few KB
    heavy, finished = as_images(*[buffer.getvalue()] * 7), []
    with LiveServer(create_app(ServeSettings(model=artifacts(IMAGE_TASKS[0], "checkpoint")))) as server:

        def send_heavy() -> None:
            finished.append(("heavy", httpx.post(f"{server.url}/predict", json=heavy, timeout=120).status_code))

        thread = threading.Thread(target=send_heavy)
        thread.start()
        time.sleep(0.2)  # the heavy request is being read and decoded
        finished.append(("health", httpx.get(f"{server.url}/health", timeout=120).status_code))
        thread.join()
    assert finished == [("health", 200), ("heavy", 200)], finished


@needs_images
def test_images_past_the_servers_pixel_budget_wait_then_get_503_with_retry_after(artifacts):
    """The budget is the server's, not a request's: while one request's pixels are being decoded, another whose
    pixels do not fit beside them waits, then gets 503 with Retry-After; one over the whole budget gets 422."""
    app = create_app(ServeSettings(model=artifacts(IMAGE_TASKS[0], "checkpoint"), max_decoding_pixels=5000))
    codec, decoding, finish = app.state.service.trained.codec, threading.Event(), threading.Event()
    encode = codec.encode

    def held_encode(items: list) -> tuple[torch.Tensor, ...]:
        decoding.set()
        finish.wait(30)  # the first request holds its 4096 pixels until the test lets it go
        return encode(items)

    codec.encode = held_encode
    small = as_images(png_of_size(64, 64))  # 4096 pixels: one fits in 5000, two do not
    finished: list[httpx.Response] = []
    with LiveServer(app) as server:
        first = threading.Thread(target=lambda: finished.append(httpx.post(f"{server.url}/predict", json=small)))
        first.start()
        assert decoding.wait(30)
        waited = time.monotonic()
        busy = httpx.post(f"{server.url}/predict", json=small, timeout=10)
        waited = time.monotonic() - waited
        too_large = httpx.post(f"{server.url}/predict", json=as_images(png_of_size(80, 70)))  # 5600 pixels
        finish.set()
        first.join()
        codec.encode = encode
        again = httpx.post(f"{server.url}/predict", json=small)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
    assert "decoding as many image pixels as it may (5000)" in busy.json()["error"] and waited >= 1
    assert too_large.status_code == 422 and "5600 pixels, more than this server decodes at once" in too_large.text
    assert finished[0].status_code == again.status_code == 200


def png_of_size(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 200).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (resident now) or VmHWM (the most resident so far) of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) / 1024


@pytest.mark.slow
@needs_images
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory in /proc (Linux)")
def test_a_burst_of_the_largest_requests_allowed_stays_in_the_pixel_budget_and_gives_the_memory_back(artifacts):
    """Requests at every limit at once: 8 RGBA images of 4096x4096 pixels each (4 bytes a pixel decoded, a few
    hundred KB as PNG). Before the budget, 4 of them were decoded together and the server grew by 2 GB; now it grows
    by at most 8 bytes a pixel of `max_decoding_pixels` (the decoded images and a converted copy), the requests
    that find the budget taken get 503, and the memory comes back when the burst is over."""
    worst = as_images(*[png_of_size(4096, 4096, "RGBA")] * 8)
    defaults = ServeSettings.model_fields
    assert len(json.dumps(worst)) < defaults["max_body_bytes"].default  # within every limit
    port = free_port()
    model = artifacts(IMAGE_TASKS[0], "onnx")
    command = [sys.executable, "-m", "{{ cookiecutter.__package }}", "serve", "--model", str(model), "--port", str(port)]
    server = subprocess.Popen([*command, "--access_log", "false"], env=launch_env())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not is_up(url):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        start = memory_mib(server.pid, "VmRSS")

        async def burst(count: int) -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=300) as http:
                return await asyncio.gather(*(http.post("/predict", json=worst) for _ in range(count)))

        responses = asyncio.run(burst(4))
        grown = memory_mib(server.pid, "VmHWM") - start
        time.sleep(1)  # the memory is handed back in a worker thread, once the last image is decoded
        kept = memory_mib(server.pid, "VmRSS") - start
        after = asyncio.run(burst(1))
    finally:
        server.terminate()
        server.wait(30)
    statuses = [response.status_code for response in responses]
    bound = 8 * defaults["max_decoding_pixels"].default / 2**20
    assert grown < bound, f"the server grew by {grown:.0f} MiB decoding {statuses}; the bound is {bound:.0f} MiB"
    assert kept < 64, f"{kept:.0f} MiB of the {grown:.0f} MiB the burst took stayed after it"
    assert 200 in statuses and set(statuses) <= {200, 503}, statuses
    assert all(response.headers["retry-after"] for response in responses if response.status_code == 503)
    assert after[0].status_code == 200


def is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health").status_code == 200
    except httpx.TransportError:
        return False


def test_a_body_that_stops_arriving_gets_408_and_a_body_that_is_not_json_415(artifacts):
    settings = {"body_timeout_s": 0.5}
    with LiveServer(create_app(ServeSettings(model=artifacts(QUICKEST, "checkpoint"), **settings))) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            head = "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
            connection.sendall(head.encode() + b'{"x": ')  # 94 bytes short, and then nothing
            answer = connection.recv(4096).decode()
        body = example_body(QUICKEST, artifacts)
        plain = httpx.post(f"{server.url}/predict", content=json.dumps(body), headers={"content-type": "text/plain"})
        missing = httpx.post(f"{server.url}/predict", content=json.dumps(body))
        fine = httpx.post(f"{server.url}/predict", json=body)
    assert answer.startswith("HTTP/1.1 408") and "stopped arriving" in answer
    assert plain.status_code == missing.status_code == 415 and "application/json" in plain.json()["error"]
    assert fine.status_code == 200


def test_a_body_that_drips_in_gets_408_at_its_deadline_though_it_never_stops_arriving(artifacts):
    """A byte every 0.2 s is never idle for `body_timeout_s`; `body_deadline_s` still ends it."""
    settings = {"body_timeout_s": 1.0, "body_deadline_s": 2.5}
    with LiveServer(create_app(ServeSettings(model=artifacts(QUICKEST, "checkpoint"), **settings))) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            head = "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
            started = time.monotonic()  # before the headers go: the server's clock starts when they arrive
            connection.sendall(head.encode())
            for _ in range(50):  # 10 s of drips, far past the deadline; 50 bytes, short of the 100 promised
                connection.sendall(b" ")
                if select.select([connection], [], [], 0.2)[0]:
                    break
            answer, took = connection.recv(4096).decode(), time.monotonic() - started
        fine = httpx.post(f"{server.url}/predict", json=example_body(QUICKEST, artifacts))
    assert answer.startswith("HTTP/1.1 408") and "still arriving 2.5 s after its headers" in answer, answer
    assert 2.5 <= took < 4, took
    assert fine.status_code == 200


def test_unknown_routes_and_methods_answer_json_errors(artifacts):
    with client_for(artifacts(QUICKEST, "checkpoint")) as client:
        missing, wrong_method = client.get("/nothing-here"), client.get("/predict")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"error": "Method Not Allowed"})


def test_request_body_over_the_limit_gets_413_whether_declared_or_streamed(artifacts):
    task = QUICKEST
    with client_for(artifacts(task, "checkpoint"), max_body_bytes=100) as client:
        declared = client.post("/predict", content=b"x" * 101, headers={"content-type": "application/json"})
        chunks = iter([b"{", b" " * 200, b"}"])
        streamed = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
        small = client.post("/predict", json={})  # under the limit: read, and judged on what it says
    assert declared.status_code == 413 and streamed.status_code == 413
    assert "over the limit of 100 bytes" in declared.json()["error"]
    assert small.status_code == 422


def test_api_key_guards_predict_and_metadata_but_not_health(artifacts):
    task = QUICKEST
    body = example_body(task, artifacts)
    with client_for(artifacts(task, "checkpoint"), api_key="s3cret") as client:
        assert client.post("/predict", json=body).status_code == 401
        assert client.post("/predict", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/predict", json=body, headers={"X-API-Key": "clé".encode("latin-1")}).status_code == 401
        assert client.get("/metadata").status_code == 401
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200


def scraped(metrics: str, name: str) -> dict[tuple[str, ...], float]:
    """The samples called `name` in a /metrics answer, by their labels' values in the order of the labels' names:
    {("/predict", "200"): 3.0, ...} for (route, status), {("+Inf", "/predict"): 7.0, ...} for (le, route)."""
    families = text_string_to_metric_families(metrics)
    samples = (sample for family in families for sample in family.samples if sample.name == name)
    return {tuple(value for _, value in sorted(sample.labels.items())): sample.value for sample in samples}


def test_metrics_count_each_kind_of_request_and_each_forward_pass_exactly(artifacts):
    """N requests of each kind, one at a time (so each is a forward pass of its own): /metrics counts every one
    under its route and status, each refusal under its reason, and every batch size, to the unit."""
    n, key, plain = 3, {"X-API-Key": "k"}, {"X-API-Key": "k", "content-type": "text/plain"}
    ((field, examples),) = example_body(QUICKEST, artifacts).items()
    started = time.perf_counter()
    limit = max(1000, len(json.dumps({field: examples[:1] * 4})))  # the largest request below passes
    app = create_app(ServeSettings(model=artifacts(QUICKEST, "checkpoint"), api_key="k", max_body_bytes=limit))
    created_in = time.perf_counter() - started
    with TestClient(app) as client:
        for _ in range(n):
            for size in (1, 2, 4):
                assert client.post("/predict", json={field: examples[:1] * size}, headers=key).status_code == 200
            assert client.post("/predict", json={field: []}, headers=key).status_code == 422
            assert client.post("/predict", json={field: examples}).status_code == 401
            assert client.post("/predict", content="{}", headers=plain).status_code == 415
            assert client.post("/predict", content=b" " * (limit + 1), headers=key).status_code == 413
            assert client.get("/nothing-here").status_code == 404
        assert client.get("/metrics").status_code == 401  # behind the key, as /predict is
        text = client.get("/metrics", headers=key).text
    predict, metrics = {("/predict", str(status)) for status in (200, 401, 413, 415, 422)}, ("/metrics", "401")
    assert scraped(text, "serve_requests_total") == {
        **dict.fromkeys(predict, n),
        ("/predict", "200"): 3 * n,
        ("other", "404"): n,
        metrics: 1,
    }
    reasons = ("bad_input", "unauthorized", "not_json", "body_too_large", "no_such_route")
    assert scraped(text, "serve_refused_total") == {**{(r,): n for r in reasons}, ("unauthorized",): n + 1}
    latency = scraped(text, "serve_request_duration_seconds_count")
    assert latency == {("/predict",): 7 * n, ("other",): n, ("/metrics",): 1}
    assert 0 < sum(scraped(text, "serve_request_duration_seconds_sum").values()) < time.perf_counter() - started
    assert scraped(text, "serve_request_duration_seconds_bucket")[("+Inf", "/predict")] == 7 * n
    # 3n forward passes, of 1, 2 and 4 examples (the refused requests never reached the model)
    buckets = scraped(text, "serve_batch_size_bucket")
    assert [buckets[(le,)] for le in ("1.0", "2.0", "4.0", "+Inf")] == [n, 2 * n, 3 * n, 3 * n]
    assert scraped(text, "serve_batch_size_sum") == {(): 7 * n}
    assert scraped(text, "serve_queue_depth") == {(): 0}
    assert 0 < scraped(text, "serve_model_load_seconds")[()] < created_in


def test_queue_depth_counts_the_requests_waiting_for_the_model(tmp_path):
    """The gauge is read when /metrics is scraped: 3 requests wait while the model answers a first."""
    release = threading.Event()

    def slow(noise: torch.Tensor) -> dict[str, torch.Tensor]:
        release.wait(30)
        return {"image": torch.zeros(len(noise), 1, 8, 8)}

    trained = Trained(slow, NoiseCodec(), TINY_GAN, tmp_path / "tiny.ckpt", "checkpoint")
    app = create_app(ServeSettings(model=trained.path, max_batch_size=1), trained)
    statuses: list[int] = []
    with LiveServer(app) as server:

        def depth() -> float:
            return scraped(httpx.get(f"{server.url}/metrics").text, "serve_queue_depth")[()]

        def send() -> None:
            statuses.append(httpx.post(f"{server.url}/predict", json={"seed": 1}, timeout=60).status_code)

        senders = [threading.Thread(target=send) for _ in range(4)]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while depth() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = depth()
        release.set()
        for sender in senders:
            sender.join()
        after = depth()
    assert (waiting, after, statuses) == (3, 0, [200] * 4)


def test_metrics_can_be_turned_off_or_opened_to_a_scraper_without_the_key(artifacts):
    model, body = artifacts(QUICKEST, "checkpoint"), example_body(QUICKEST, artifacts)
    with client_for(model, metrics=False) as client:
        assert client.post("/predict", json=body).status_code == 200
        off = client.get("/metrics")
        assert client.app.state.service.batcher.on_batch is None  # nothing measured on the hot path
    with client_for(model, api_key="k", metrics_need_key=False) as client:
        opened = client.get("/metrics")
        assert client.post("/predict", json=body).status_code == 401  # the rest stays behind the key
    assert off.status_code == 404
    assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/plain")
    assert scraped(opened.text, "serve_requests_total") == {}  # the scrape is counted once answered


# The fuzzer's settings: fixed seed and example count, so a run is the same run every time. A small batch limit keeps
# the document's largest valid body small (64 MNIST images are 50,000 numbers a case).
FUZZ = ["--seed", "1", "--max-examples", "10", "--phases", "examples,coverage,fuzzing", "--checks", "all"]
FUZZ += ["--request-timeout", "60"]  # a busy test machine is slow, not wrong
# An image field's schema says "a string"; no JSON schema can say "that decodes as an image", so a schema-valid
# request may get 422 there, with the reason. Every other check, and every other field, is held to the document.
# The README gives users the same file for their image tasks.
IMAGE_FIELDS_CONFIG = '[checks.positive_data_acceptance]\nexpected-statuses = ["2XX", "401", "422"]\n'


@pytest.mark.slow  # a fuzzer's process per task
@pytest.mark.parametrize(
    ("task", "api_key"),
    [(task, "fuzz") for task in TASKS] + [(QUICKEST, None)],  # the server without a key declares no security
    ids=[*TASKS, f"{QUICKEST}-without-key"],
)
def test_the_api_fuzzed_from_its_own_openapi_document_answers_as_it_says(artifacts, task, api_key, tmp_path):
    """schemathesis reads /openapi.json and sends what it allows and what it forbids: no 5xx, only documented
    statuses and bodies, schema-valid requests accepted, schema-violating ones refused, the key (declared only when
    set) enforced."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(IMAGE_FIELDS_CONFIG if load_checkpoint(artifacts(task, "checkpoint")).codec.file_field else "")
    app = create_app(ServeSettings(model=artifacts(task, "onnx"), api_key=api_key, max_batch_size=4))
    key = ["--header", f"X-API-Key: {api_key}"] if api_key else []
    with LiveServer(app) as server:
        fuzz = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", *FUZZ, *key]
        done = subprocess.run([*fuzz, f"{server.url}/openapi.json"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-6000:]
    cases = next(line for line in done.stdout.splitlines() if " generated, " in line)  # "133 generated, 133 passed"
    assert cases.split()[0] == cases.split()[2] and "found" not in cases, done.stdout[-3000:]


def test_bounded_load_gives_no_5xx_and_flat_memory(artifacts):
    """300 requests at 16 in flight against uvicorn on loopback, after 100 to warm up."""
    task = QUICKEST
    body = example_body(task, artifacts)

    async def load(url: str, count: int) -> list[int]:
        limit = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=url) as http:

            async def one() -> int:
                async with limit:
                    return (await http.post("/predict", json=body)).status_code

            return await asyncio.gather(*(one() for _ in range(count)))

    with LiveServer(create_app(ServeSettings(model=artifacts(task, "checkpoint")))) as server:
        assert set(asyncio.run(load(server.url, 100))) == {200}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        statuses = asyncio.run(load(server.url, 300))
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert statuses.count(200) == 300, {status: statuses.count(status) for status in set(statuses)}
    assert grown_mib < 50, f"peak memory grew {grown_mib:.0f} MiB over 300 requests"


def test_what_is_loaded_before_serving_is_frozen_out_of_the_garbage_collectors_scans(artifacts):
    """A full collection scans every object the collector tracks, with every request waiting: with torch and the
    model loaded, 100-300 ms, the server's p99 latency before. The server freezes what it loaded when it starts
    (full collections then scan only what requests made) and thaws it when it stops."""
    assert gc.get_freeze_count() == 0
    with client_for(artifacts(QUICKEST, "checkpoint")) as client:
        frozen = gc.get_freeze_count()
        assert client.post("/predict", json=example_body(QUICKEST, artifacts)).status_code == 200
        assert gc.get_freeze_count() <= frozen  # what requests make is not frozen: collected as before
    assert frozen > 100_000 and gc.get_freeze_count() == 0  # torch alone is well over 100,000 objects


class SeedRequest(Request):
    seed: int = Field(ge=0, description="the same seed gives the same images")
    count: int = Field(1, ge=1, le=16, description="how many images")

    def items(self) -> list[tuple[int, int]]:
        return [(self.seed, i) for i in range(self.count)]


@dataclasses.dataclass(kw_only=True)
class NoiseCodec(Codec):
    """A generator's codec as a later task would write it: a seed and a count in, PNG images out."""

    request_model = SeedRequest
    example_request = {"seed": 0, "count": 2}

    def encode(self, items: list[tuple[int, int]]) -> tuple[torch.Tensor, ...]:
        generators = (torch.Generator().manual_seed(seed * 1000 + i) for seed, i in items)
        return (torch.stack([torch.randn(8, generator=g) for g in generators]),)


class PNGOutputs(Outputs):
    """A generator's kind of output as a later task would write it: each image as a PNG file."""

    answers_files = True

    def answers(self, outputs: dict[str, torch.Tensor], labels: list[str] | None) -> list[dict]:
        pngs = []
        for image in outputs["image"]:
            buffer = io.BytesIO()
            Image.fromarray((image[0] * 255).round().byte().numpy()).save(buffer, format="PNG")
            pngs.append({"image_png": base64.b64encode(buffer.getvalue()).decode()})
        return pngs


class TinyGenerator(torch.nn.Module):
    outputs = PNGOutputs()

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 64)

    def predict(self, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": torch.sigmoid(self.layer(noise)).view(-1, 1, 8, 8)}


TINY_GAN = {"task": "tiny_gan", "model_class": f"{__name__}.TinyGenerator", "model_version": "v1"}


def test_a_generator_plugs_in_through_its_codec_and_answers_png_images(tmp_path):
    """A later task (a GAN: seed and count in, PNG out) needs nothing from the server but its codec (what a request
    is) and its kind of output (what an answer is)."""
    generator = TinyGenerator().eval()
    trained = Trained(torch_predict(generator), NoiseCodec(), TINY_GAN, tmp_path / "tiny.ckpt", "checkpoint")
    with TestClient(create_app(ServeSettings(model=trained.path), trained)) as client:
        first = client.post("/predict", json={"seed": 7, "count": 3})
        again = client.post("/predict", json={"seed": 7, "count": 3}).json()["predictions"]
        other = client.post("/predict", json={"seed": 8}).json()["predictions"]
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json={"seed": 7, "count": 17}).status_code == 422
    assert first.status_code == 200, first.text
    images = [Image.open(io.BytesIO(base64.b64decode(row["image_png"]))) for row in first.json()["predictions"]]
    expected = generator.predict(NoiseCodec().encode([(7, i) for i in range(3)])[0])["image"]
    for image, pixels in zip(images, expected, strict=True):
        assert image.format == "PNG" and image.size == (8, 8)
        assert np.array_equal(np.array(image), (pixels[0] * 255).round().byte().numpy())
    assert again == first.json()["predictions"] and other[0] != again[0]


def test_an_answer_that_is_not_a_finite_number_gets_422_not_500(tmp_path):
    """JSON has no inf or NaN: a model that overflows on some input is answered with the reason, not a crash."""

    def overflowing(noise: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": torch.full((len(noise), 1, 8, 8), float("nan"))}

    trained = Trained(overflowing, NoiseCodec(), TINY_GAN, tmp_path / "tiny.ckpt", "checkpoint")
    with TestClient(create_app(ServeSettings(model=trained.path), trained)) as client:
        response = client.post("/predict", json={"seed": 7})
    assert response.status_code == 422 and "'image' for these inputs is not a finite number" in response.json()["error"]


def test_serve_command_line_overrides_environment_which_overrides_defaults(artifacts, monkeypatch):
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(app=app, **options))
    monkeypatch.setenv("SERVE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("SERVE_PORT", "9000")
    serve_main(["--model", str(artifacts(QUICKEST, "checkpoint")), "--port", "9001", "--access_log", "false"])
    assert started["port"] == 9001 and started["access_log"] is False and started["host"] == "127.0.0.1"
    assert started["app"].state.service.batcher.max_batch_size == 7

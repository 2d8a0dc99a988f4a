"""Serving any task over HTTP: `python -m {{ cookiecutter.__package }} serve --model PATH`.

- `schemas.py`: the request and response bodies (pydantic); each data module names its request body.
- `predictor.py`: loads a checkpoint, an ONNX file or an int8 model once, and predicts on a batch.
- `batching.py`: gathers concurrent requests into one batch (maximum size, maximum wait).
- `app.py`: the FastAPI app factory, its settings, limits and errors.
"""

"""Serving any task over HTTP: `python -m {{ cookiecutter.__package }} serve --model PATH`.

- `app.py`: `create_app(settings)` assembles the app around one loaded model, and `main` starts it.
- `settings.py`: the settings, from options, SERVE_* environment variables or a config file.
- `routes.py`: /health, /metadata, /predict, /predict/file and /metrics, on APIRouters.
- `errors.py`: the JSON errors, and the limits on a body's size and on how long it takes to arrive.
- `batching.py`: gathers concurrent requests into one forward pass (maximum size, maximum wait).
- `metrics.py`: GET /metrics in Prometheus's text format: requests, latency, refusals, batch sizes, queue depth.
- `budget.py`: the image pixels all requests may be decoding at once, and the memory handed back after.
- `schemas.py`: the response bodies; each codec (data/) names its request body.
"""

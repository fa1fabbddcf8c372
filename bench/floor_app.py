"""The framework's floor for bench/api.py: one Flask route returning a constant JSON, nothing else.

Served by the same gunicorn settings as the portal (`gunicorn bench.floor_app:app`, from the repository root).
"""
from flask import Flask

app = Flask(__name__)


@app.get("/floor")
def floor():
    return {"status": "ok", "items": [1, 2, 3]}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}

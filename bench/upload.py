"""Upload benchmark: gunicorn CPU per 12 MP multipart upload, this checkout and optionally another.

    .venv/bin/python bench/upload.py                          # ~30 s: 3 rounds of 20 uploads
    .venv/bin/python bench/upload.py --other /tmp/base         # A/B, rounds interleaved

Starts `gunicorn wsgi:app` (docker-compose.yml's 4 workers x 4 threads) of each checkout against a
throw-away MariaDB database and Redis db 11 (no Celery worker: the tasks wait in Redis), sends
the queue bench's 4.8 MB camera-like JPEG as `multipart/form-data` from one http.client
connection per upload, and prints the CPU of gunicorn's master and workers per upload (from
/proc). `--other` is a second checkout (e.g. `git worktree add /tmp/base HEAD~3`) run with this
checkout's Python. See bench/README.md ("Queue benchmark").
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/queue.py shadows `queue`
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests" / "integration")]
sys.path.append(str(HERE))

import argparse  # noqa: E402
import base64  # noqa: E402
import http.client  # noqa: E402
import statistics  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import benchstack  # noqa: E402
import it_images  # noqa: E402
from urllib3 import encode_multipart_formdata  # noqa: E402

REDIS_DB = 11
FIELDS = {"description": "Upload benchmark", "target_market": "Young adults aged 18-35",
          "campaign_message": "Make this summer unforgettable!", "products_description": "Beach products"}


def per_upload_cpu_ms(stack: benchstack.Stack, name: str, base: str, body: bytes, content_type: str,
                      count: int) -> float:
    host, port = urlsplit(base).hostname, urlsplit(base).port
    auth = "Basic " + base64.b64encode(f"{benchstack.USER}:{stack.password}".encode()).decode()
    before = benchstack.tree_cpu_seconds(stack.pids[name])
    for _ in range(count):
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("POST", "/api/campaigns", body=body, headers={"Content-Type": content_type, "Authorization": auth})
        response = conn.getresponse()
        if response.status != 202:
            raise RuntimeError(f"upload: {response.status} {response.read()[:300]!r}")
        response.read()
        conn.close()
    return (benchstack.tree_cpu_seconds(stack.pids[name]) - before) * 1000 / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="a second checkout, measured in the same rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=20, help="uploads per round and checkout")
    opts = parser.parse_args()
    body, content_type = encode_multipart_formdata({**FIELDS, "image": ("photo.jpg", it_images.photo_12mp(),
                                                                        "image/jpeg")})
    print(f"{benchstack.uptime()}; body {len(body) / 1e6:.1f} MB", flush=True)
    checkouts = {"this": HERE.parent, **({"other": opts.other.resolve()} if opts.other else {})}
    results: dict[str, list[float]] = {name: [] for name in checkouts}
    with benchstack.Stack(REDIS_DB, "upload") as stack:
        bases = {name: stack.gunicorn(name, "wsgi:app", cwd=root) for name, root in checkouts.items()}
        for name, base in bases.items():  # warm: every worker has imported everything once
            per_upload_cpu_ms(stack, name, base, body, content_type, 8)
        for _ in range(opts.rounds):
            for name, base in bases.items():
                results[name].append(per_upload_cpu_ms(stack, name, base, body, content_type, opts.uploads))
                print(f"  {name}: {results[name][-1]:.1f} ms", flush=True)
    print("\n| checkout | gunicorn CPU ms per upload, each round | median |\n| --- | --- | ---: |")
    for name, values in results.items():
        print(f"| {name}: {checkouts[name]} | {' / '.join(f'{v:.1f}' for v in values)} | "
              f"{statistics.median(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""boto3 vs the minio SDK for the S3 backend's data path, measured.

    python -m benchmarks.s3_client_choice [--repeat 20] [--keys 1000] [--out benchmarks/results]

Against a real SeaweedFS on loopback (tests/support/seaweed.py), for each
client: resident memory after import + client construction (fresh
interpreter each), time per 1 MB PUT and GET, and time to list 1,000 keys
(ListObjectsV2, paginated).  Medians are reported; results go to
`<out>/s3_client_choice.md` (and `.json`).  A measurement, never an assertion.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from tests.support.seaweed import SeaweedFS

BUCKET = "choice"
MB = 1_000_000

#: Each probe runs in a fresh interpreter and prints its RSS (kB) after import + client creation.
RSS_PROBES = {
    "baseline (python only)": "pass",
    "boto3": (
        "from zasperhub.contents.s3.config import S3Settings; "
        "c = S3Settings(endpoint_url='http://127.0.0.1:1', region_name='us-east-1', access_key_id='a', "
        "secret_access_key='b').make_client()"
    ),
    "minio": "from minio import Minio; c = Minio('127.0.0.1:1', access_key='a', secret_key='b', secure=False)",
}


def rss_after(code: str) -> int:
    """VmRSS in kB of a fresh interpreter after running `code`."""
    probe = code + "\nprint([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def boto3_ops(server: SeaweedFS) -> dict[str, Callable[..., Any]]:
    from zasperhub.contents.s3.config import S3Settings

    # Exactly the client the backend builds (timeouts, retries, checksums "when_required").
    client = S3Settings(
        endpoint_url=server.endpoint, region_name="us-east-1", access_key_id=server.access_key, secret_access_key=server.secret_key
    ).make_client()

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(key: str) -> bytes:
        return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def count(prefix: str) -> int:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix, Delimiter="/")
        return sum(len(p.get("Contents", ())) for p in pages)

    return {"put": put, "get": get, "list": count}


def minio_ops(server: SeaweedFS) -> dict[str, Callable[..., Any]]:
    from minio import Minio

    client = Minio(server.endpoint.split("//")[1], access_key=server.access_key, secret_key=server.secret_key, secure=False, region="us-east-1")

    def put(key: str, data: bytes) -> None:
        client.put_object(BUCKET, key, io.BytesIO(data), len(data))

    def get(key: str) -> bytes:
        response = client.get_object(BUCKET, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def count(prefix: str) -> int:
        return sum(1 for _ in client.list_objects(BUCKET, prefix=prefix))

    return {"put": put, "get": get, "list": count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"rss_kb": {name: rss_after(code) for name, code in RSS_PROBES.items()}, "clients": {}}
    data = os.urandom(MB)
    with tempfile.TemporaryDirectory() as tmp, SeaweedFS(tmp) as server:
        server.create_bucket(BUCKET)
        admin = server.client()
        keys = [f"listing/k{i:05d}" for i in range(args.keys)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: admin.put_object(Bucket=BUCKET, Key=k, Body=b"x"), keys))
        for name, make in (("boto3", boto3_ops), ("minio", minio_ops)):
            ops = make(server)
            ops["put"](f"{name}/warm", data)  # connection set-up and lazy loading outside the timings
            assert ops["get"](f"{name}/warm") == data
            assert ops["list"]("listing/") == args.keys
            results["clients"][name] = {
                "put_1mb_ms": 1000 * timed(lambda: ops["put"](f"{name}/obj", data), args.repeat),
                "get_1mb_ms": 1000 * timed(lambda: ops["get"](f"{name}/obj"), args.repeat),
                f"list_{args.keys}_ms": 1000 * timed(lambda: ops["list"]("listing/"), max(3, args.repeat // 4)),
            }
    results["machine"] = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cpus, shared"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "s3_client_choice.json").write_text(json.dumps(results, indent=2))
    (out / "s3_client_choice.md").write_text(render(results, args))
    print(render(results, args))
    return 0


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    rss = results["rss_kb"]
    base = rss["baseline (python only)"]
    lines = [
        "# S3 client choice: boto3 vs minio (measured)",
        "",
        f"`python -m benchmarks.s3_client_choice --repeat {args.repeat} --keys {args.keys}` against SeaweedFS on loopback; "
        f"{results['machine']}. Medians.",
        "",
        "| | RSS after import + client (MB) | over bare Python (MB) | PUT 1 MB (ms) | GET 1 MB (ms) | list "
        f"{args.keys} keys (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, timings in results["clients"].items():
        values = list(timings.values())
        lines.append(
            f"| {name} | {rss[name] / 1024:.1f} | {(rss[name] - base) / 1024:.1f} | {values[0]:.1f} | {values[1]:.1f} | {values[2]:.1f} |"
        )
    lines += ["", f"Bare interpreter: {base / 1024:.1f} MB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

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


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call.

    CPU time is the client library's own cost (the server is another
    process) and is much steadier than wall time on a shared machine.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


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


def stock_boto3_ops(server: SeaweedFS) -> dict[str, Callable[..., Any]]:
    """boto3 with its defaults: CRC checksums on every request, dateutil timestamp parsing."""
    ops = boto3_ops(server)
    client = server.client()
    ops["put"] = lambda key, data: client.put_object(Bucket=BUCKET, Key=key, Body=data)
    ops["get"] = lambda key: client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    ops["list"] = lambda prefix: sum(
        len(p.get("Contents", ()))
        for p in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix, Delimiter="/")
    )
    return ops


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
        clients = {"boto3": boto3_ops(server), "boto3, stock settings": stock_boto3_ops(server), "minio": minio_ops(server)}
        for name, ops in clients.items():
            ops["put"](f"{name}/warm", data)  # connection set-up and lazy loading outside the timings
            assert ops["get"](f"{name}/warm") == data
            assert ops["list"]("listing/") == args.keys
        # Interleaved rounds, so both clients see the same background load on a shared machine.
        samples: dict[str, dict[str, list[tuple[float, float]]]] = {name: {"put": [], "get": [], "list": []} for name in clients}
        for round_number in range(args.repeat):
            for name, ops in clients.items():
                samples[name]["put"].append(timed(lambda: ops["put"](f"{name}/obj", data)))
                samples[name]["get"].append(timed(lambda: ops["get"](f"{name}/obj")))
                if round_number % 4 == 0:
                    samples[name]["list"].append(timed(lambda: ops["list"]("listing/")))
        for name, ops_samples in samples.items():
            results["clients"][name] = {
                f"{op}_{kind}_ms": 1000 * statistics.median(s[index] for s in values)
                for op, values in ops_samples.items()
                for index, kind in enumerate(("wall", "cpu"))
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
        "| | RSS after import + client (MB) | over bare Python (MB) | PUT 1 MB wall / client CPU (ms) "
        f"| GET 1 MB wall / CPU (ms) | list {args.keys} keys wall / CPU (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in results["clients"].items():
        memory = rss.get(name.split(",")[0], 0)
        lines.append(
            f"| {name} | {memory / 1024:.1f} | {(memory - base) / 1024:.1f} "
            f"| {t['put_wall_ms']:.0f} / {t['put_cpu_ms']:.1f} | {t['get_wall_ms']:.0f} / {t['get_cpu_ms']:.1f} "
            f"| {t['list_wall_ms']:.0f} / {t['list_cpu_ms']:.1f} |"
        )
    lines += ["", f"Bare interpreter: {base / 1024:.1f} MB.", "", COVERAGE]
    return "\n".join(lines)


COVERAGE = """## API coverage (what the backend needs)

| Need | boto3 | minio 7.2 |
|---|---|---|
| Conditional PUT (`If-Match`, `If-None-Match: *`) for conflict checks and exclusive create | `put_object(IfMatch=…, IfNoneMatch=…)` | not possible: `put_object` turns unknown headers into `x-amz-meta-*` user metadata |
| Chunked upload streamed into one multipart upload across many HTTP requests | public `create_multipart_upload` / `upload_part` / `complete_multipart_upload` / `abort_multipart_upload` | only private `_create_multipart_upload`, `_upload_part`…; the public `put_object` wants one stream read to the end in one call |
| Server-side copy, multipart copy of large objects | `copy_object`, `upload_part_copy` | `copy_object`, `compose_object` |
| Credentials | the full AWS chain: env, shared config/profiles, SSO, assume-role, web identity (IRSA), ECS/IMDS | env, config file, IMDS/IRSA providers (no SSO/assume-role profiles) |
| Retries and timeouts | `Config(retries=…, connect_timeout=…, read_timeout=…)` | via a custom urllib3 `PoolManager` |

## Decision: boto3

The data path's time is the server's: PUT/GET of 1 MB take the same wall time
with either client, and the client-side CPU differs by 1–2 ms per MB.  Stock
boto3 spends about twice minio's CPU listing a folder, almost all of it in
dateutil parsing each key's timestamp; the backend installs an ISO-8601
timestamp parser in botocore's response parser factory (the same hook the AWS
CLI uses), which brings listing below minio's CPU cost (row "boto3" vs
"boto3, stock settings").  minio is lighter to import (about 23 MB less RSS),
but cannot send conditional PUTs and keeps its multipart primitives private —
both needed for conflict-safe saves and streamed chunked uploads — so boto3 it
is.  The import cost is paid only when an `s3://` store is configured.
"""


if __name__ == "__main__":
    sys.exit(main())

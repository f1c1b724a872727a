"""Contents benchmark: open/save of 1 MB and 20 MB notebooks, listing 5,000 entries.

    python -m benchmarks.contents_bench [--backends local,s3,gdrive] [--repeat 3]
        [--entries 5000] [--sizes 1,20] [--out benchmarks/results] [--tag NAME]

Every operation goes through the shared `ContentsManager`, as the server
runs it, so the numbers include notebook parsing/serialisation and the
backend's round trips.  The stores are the ones the tests use: a temp
directory, a real SeaweedFS (S3) on loopback, and the local Drive v3 double
(its numbers show our client-side cost, not Google's latency).  Results go
to `<out>/contents-<tag>.json` and `.md`.  This is a measurement, never an
assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from zasperhub.contents.base import Backend
from zasperhub.contents.manager import ContentsManager

BACKENDS = ("local", "s3", "gdrive")


def make_notebook(megabytes: float) -> dict[str, Any]:
    """A notebook of about `megabytes` MB: code cells with text outputs, like real work."""
    line = "x = [i * i for i in range(100)]  # some code that was run\n"
    output = "".join(f"{i:6d} result line of a printed table with values {i * 3.14159:.5f}\n" for i in range(200))
    cell_bytes = len(line) * 10 + len(output) + 300
    cells = []
    for i in range(max(1, int(megabytes * 1024 * 1024 / cell_bytes))):
        cells.append(
            {
                "cell_type": "code",
                "execution_count": i + 1,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [{"name": "stdout", "output_type": "stream", "text": output}],
                "source": line * 10,
            }
        )
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}


@contextlib.asynccontextmanager
async def open_backend(name: str, workdir: Path) -> AsyncIterator[Backend]:
    """A fresh, empty store of kind `name`, torn down afterwards."""
    if name == "local":
        from zasperhub.contents.local import LocalBackend

        root = workdir / "local"
        root.mkdir()
        yield LocalBackend(str(root))
    elif name == "s3":
        from tests.support.seaweed import SeaweedFS
        from zasperhub.contents.s3 import S3Backend

        server = SeaweedFS(workdir / "seaweedfs").start()
        try:
            server.create_bucket("bench")
            backend = S3Backend(
                bucket="bench", prefix="run", endpoint_url=server.endpoint, region_name="us-east-1",
                access_key_id=server.access_key, secret_access_key=server.secret_key,
            )
            yield backend
            await backend.close()
        finally:
            server.stop()
    elif name == "gdrive":
        from tests.support.drive_double import DriveDouble
        from zasperhub.contents.gdrive import DriveBackend

        double = DriveDouble().start()
        try:
            client = double.add_client()
            backend = DriveBackend(
                folder_id=double.folder("bench"), root_url=double.url, token_uri=double.token_uri,
                refresh_token=client["refresh_token"], client_id=client["client_id"],
                client_secret=client["client_secret"], access_token="", credentials_file="",
            )
            yield backend
            await backend.close()
        finally:
            double.stop()
    else:
        raise SystemExit(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    """Median/min/max wall time of `repeat` runs of `fn`, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1), "max_ms": round(max(times), 1)}


async def bench_backend(name: str, *, sizes: list[float], entries: int, repeat: int) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": name}
    with tempfile.TemporaryDirectory(prefix="contents-bench-") as tmp:
        async with open_backend(name, Path(tmp)) as backend:
            cm = ContentsManager(backend, validate_notebooks=False)
            result["describe"] = cm.describe()
            for mb in sizes:
                nb = make_notebook(mb)
                path = f"nb-{mb:g}MB.ipynb"
                await cm.save({"type": "notebook", "content": nb}, path)  # warm-up + first checkpoint
                size = (await cm.get(path, content=False))["size"]
                model = {"type": "notebook", "content": nb}
                result[f"save_{mb:g}MB"] = await timed(lambda m=model, p=path: cm.save(m, p), repeat)  # type: ignore[misc]
                result[f"open_{mb:g}MB"] = await timed(lambda p=path: cm.get(p), repeat)  # type: ignore[misc]
                result[f"size_{mb:g}MB_bytes"] = size
            await cm.mkdir("many")
            sem = asyncio.Semaphore(32)

            async def put(i: int) -> None:
                async with sem:
                    await backend.write(f"many/file-{i:05d}.txt", b"x")

            start = time.perf_counter()
            await asyncio.gather(*(put(i) for i in range(entries)))
            result["create_entries_s"] = round(time.perf_counter() - start, 2)

            async def listing() -> None:
                model = await cm.get("many")
                assert len(model["content"]) == entries, len(model["content"])

            result[f"list_{entries}"] = await timed(listing, repeat)
    return result


def to_markdown(run: dict[str, Any]) -> str:
    sizes, entries = run["sizes"], run["entries"]
    cols = [f"save {s:g} MB" for s in sizes] + [f"open {s:g} MB" for s in sizes] + [f"list {entries}"]
    keys = [f"save_{s:g}MB" for s in sizes] + [f"open_{s:g}MB" for s in sizes] + [f"list_{entries}"]
    lines = [
        f"# Contents benchmark ({run['tag']})",
        "",
        f"{run['machine']}; median of {run['repeat']} runs, milliseconds (min–max). Through `ContentsManager`;"
        " S3 = SeaweedFS on loopback, Drive = the local v3 double. Peak RSS of the benchmark process:"
        f" {run['peak_rss_mb']} MB. Machine load (1-min average, start/end): {run['load_avg_1min']} on {run['cpus']} CPUs.",
        "",
        "| backend | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for r in run["results"]:
        if "error" in r:
            lines.append(f"| {r['backend']} | " + " | ".join(["—"] * len(cols)) + f" |  error: {r['error']}")
            continue
        cells = [f"{r[k]['median_ms']} ({r[k]['min_ms']}–{r[k]['max_ms']})" for k in keys]
        lines.append(f"| {r['backend']} | " + " | ".join(cells) + " |")
    lines += ["", "Notebook sizes on disk: " + ", ".join(
        f"{r['backend']} {', '.join(str(r.get(f'size_{s:g}MB_bytes')) for s in sizes)} B" for r in run["results"] if "error" not in r
    ), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contents_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--sizes", default="1,20", help="notebook sizes in MB")
    p.add_argument("--entries", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"))
    args = p.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",") if s]
    results = []
    load_before = os.getloadavg()[0]
    for name in [b for b in args.backends.split(",") if b]:
        print(f"contents benchmark: {name} …", file=sys.stderr, flush=True)
        try:
            results.append(asyncio.run(bench_backend(name, sizes=sizes, entries=args.entries, repeat=args.repeat)))
        except Exception as e:  # keep the other backends' numbers
            results.append({"backend": name, "error": f"{type(e).__name__}: {e}"})
    run = {
        "tag": args.tag,
        "machine": f"{platform.machine()} Python {platform.python_version()}",
        "sizes": sizes,
        "entries": args.entries,
        "repeat": args.repeat,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # Other work on the machine skews every number; say how busy it was.
        "load_avg_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"contents-{args.tag}.json").write_text(json.dumps(run, indent=1) + "\n")
    (args.out / f"contents-{args.tag}.md").write_text(to_markdown(run))
    print(to_markdown(run))


if __name__ == "__main__":
    main()

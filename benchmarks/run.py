"""One command: run every scenario against every server, write JSON, a
markdown table of ratios and PNG plots.

    python -m benchmarks.run --servers zasperhub,jupyter-server \\
        --scenarios steady,ceiling --wires legacy,v1 [--configs 2x10,8x10] [--quick]

Servers are interleaved per configuration (a fresh process each time) so
slow drift of the machine affects both alike.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.scenarios import SCENARIOS, parse_configs, run_one
from benchmarks.servers import BASE_NICE, BenchEnv, ensure_jupyter_server
from benchmarks.workloads import raise_priority

SERVERS = ("zasperhub", "jupyter-server")
WIRES = ("legacy", "v1")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=",".join(SERVERS), help="comma list of zasperhub, jupyter-server")
    p.add_argument("--scenarios", default="steady", help=f"comma list of {', '.join(SCENARIOS)}")
    p.add_argument("--wires", default=",".join(WIRES), help="comma list of legacy, v1")
    p.add_argument("--configs", default="", help="override the scenarios' KERNELSxRATE list, e.g. 2x10,8x10")
    p.add_argument("--window", type=float, default=30.0, help="seconds of load per configuration (default 30)")
    p.add_argument("--drain", type=float, default=None, help="max seconds to wait for late replies (default window/2, >= 5)")
    p.add_argument("--quick", action="store_true", help="smoke mode: 3 s windows, short drains")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output directory")
    p.add_argument("--tag", default="", help="name for this run's files (default: a timestamp)")
    p.add_argument("--zasperhub-args", default="", help="extra command-line arguments for zasperhub")
    p.add_argument("--jupyter-server-args", default="", help="extra command-line arguments for jupyter-server")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each configuration N times, the servers' order swapped every time; the report gives "
                        "each repeat's ratio and their median (the host drifts between minutes)")
    p.add_argument("--no-plots", action="store_true", help="skip PNG plots")
    p.add_argument("--profile", action="store_true",
                   help="sample each server with py-spy during the load (adds overhead; not for headline numbers)")
    args = p.parse_args(argv)

    def listed(text: str, allowed: Any, what: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in allowed]
        if bad or not items:
            p.error(f"unknown {what} {bad or text!r}; choose from {', '.join(allowed)}")
        return items

    args.servers = listed(args.servers, SERVERS, "server")
    args.scenarios = listed(args.scenarios, SCENARIOS, "scenario")
    args.wires = listed(args.wires, WIRES, "wire format")
    try:
        args.configs = parse_configs(args.configs) if args.configs else None
    except ValueError as exc:
        p.error(str(exc))
    if args.quick:
        args.window = min(args.window, 3.0)
    if args.window <= 0:
        p.error("--window must be positive")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.drain is None:
        args.drain = 5.0 if args.quick else max(5.0, args.window / 2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The samplers and the /api/status probe run here: keep them ahead of kernels too.
    harness_nice = raise_priority()
    if "jupyter-server" in args.servers:
        ensure_jupyter_server()
    env = BenchEnv()
    extra = {"zasperhub": shlex.split(args.zasperhub_args), "jupyter-server": shlex.split(args.jupyter_server_args)}
    records: list[dict[str, Any]] = []
    started = time.time()
    try:
        for name in args.scenarios:
            scenario = SCENARIOS[name]
            configs = args.configs if args.configs and name in ("steady", "saturation", "overload") else scenario.configs
            # Scenarios whose size is not a KERNELSxRATE pair keep their own.
            for kernels, rate in configs:
                for wire in args.wires:
                    for rep in range(args.repeat):
                        # Swapped every repeat: a host drifting between minutes favours neither server.
                        order = args.servers if rep % 2 == 0 else args.servers[::-1]
                        for server in order:
                            label = f"{server:15s} {name} {kernels}x{rate} {wire}"
                            if args.repeat > 1:
                                label += f" (repeat {rep + 1}/{args.repeat})"
                            print(f"[bench] {label} …", flush=True)
                            rec = run_one(server, scenario, kernels, rate, wire, window=args.window, drain=args.drain,
                                          env=env, server_args=extra[server],
                                          profile_dir=args.out / "profiles" if args.profile else None)
                            rec["repeat"] = rep
                            records.append(rec)
                            print(f"[bench] {label}: {report.one_line(rec)}", flush=True)
    finally:
        shutil.rmtree(env.base, ignore_errors=True)
    run = {"command": "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
           "duration_s": round(time.time() - started, 1), "machine": report.machine(),
           "versions": report.versions(args.servers), "quick": args.quick,
           "harness_nice": harness_nice, "server_nice": BASE_NICE,
           "jupyter_server_extensions_disabled": env.disabled_extensions, "records": records}
    paths = report.write_all(run, args.out, args.tag or time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)),
                             plots=not args.no_plots)
    for path in paths:
        print(f"[bench] wrote {path}")
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())

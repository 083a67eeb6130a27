#!/usr/bin/env python3
"""Times the shipped nightly pipeline, whole process, on generated shops.

Runs each segflow binary given (for instance the commit before a change and after it) in
turn, several times, on the same shop, and prints per binary the median wall time and peak
memory, the median of the paired ratios against the first binary, and the median seconds of
each step and output as the run history records them. Nothing here is run by the tests:
performance is measured, never asserted.

    python3 bench/nightly.py --customers 1000000 --orders 10000000 --runs 3 \\
        base=/tmp/segflow-base new=target/release/segflow

A binary given as NAME=PATH@LIMIT runs with engine.memory_limit set to LIMIT (512MiB), so
that a spilling run and a free one are paired in one session; --peer-memory-limit gives the
peers the same bound (DuckDB's memory_limit, DataFusion's fair spill pool), spilling into
--work.

Incremental nights: with --layout monthly the shop's orders are one file per month (as a
nightly export writes them). With --next-night every variant first runs the day before
(untimed), and each timed run starts from a copy of that run's state (the results its
incremental steps kept) and outputs (which segment changes and win-back cooldowns read):
a normal night, which computes only the files changed since, or with rows after that day.
A variant named by --full-run passes `--full`, and so computes every file again: the same
night without what earlier nights kept. Without --next-night every run starts empty.

With --peers, every variant runs the pipeline's benchmark variant (bench/peers.py: no model
steps, checks or report), and DuckDB and raw DataFusion (datafusion-python) run the same
SQL in each round too, on a plan rendered by the first binary after its first warm-up run;
each peer's outputs of the warm-up round are compared with segflow's row for row, and a
difference stops the benchmark. Every round runs every variant and peer, in the opposite
order of the round before, after --warmup untimed rounds; each run records its wall time,
peak memory, CPU time and the load average before it. Shops are generated once per size
(by the first binary) under --work and reused. Standard library only, but for the peers.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "pipelines" / "nightly_segments.yaml"


def timed(command, env):
    """Runs `command`; returns (seconds, peak RSS in MiB, CPU seconds, 1-minute load
    average before it). Fails loudly on a failed run."""
    load = os.getloadavg()[0]
    started = time.monotonic()
    with open(os.devnull, "wb") as quiet:
        child = subprocess.Popen(command, env=env, stdout=quiet, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        errors = child.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{errors[-4000:]}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, load


def shop(binary, work, customers, orders, end):
    folder = work / f"shop-{customers}-{orders}"
    if not (folder / "orders").exists():
        print(f"generating {customers:,} customers / {orders:,} orders in {folder}", flush=True)
        subprocess.run(
            [binary, "generate", "--customers", str(customers), "--orders", str(orders),
             "--end", end, "--seed", "42", "--out", str(folder)],
            check=True, stdout=subprocess.DEVNULL)
    return folder


def monthly(folder):
    """The shop with its orders one file per month (tests/it/oracles/incremental.py lays them out as
    the tests do, every month with one timestamp type so that the peers read them too)."""
    monthly = folder.with_name(folder.name + "-monthly")
    if not (monthly / "orders").exists():
        print(f"laying out the orders of {folder} by month in {monthly}", flush=True)
        monthly.mkdir(exist_ok=True)
        for table in ("customers", "order_items", "checkouts"):
            if not (monthly / table).exists():
                (monthly / table).symlink_to(folder / table)
        shutil.copytree(folder / "orders", monthly / "orders.partial")
        (monthly / "orders.partial").rename(monthly / "orders")
        subprocess.run([sys.executable, REPO / "tests/it/oracles/incremental.py", "split",
                        str(monthly), "--one-type"], check=True)
    return monthly


def last_record(binary, state):
    out = subprocess.run([binary, "runs", "--json", "--state", str(state)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binaries", nargs="+", metavar="NAME=PATH")
    parser.add_argument("--customers", type=int, default=250_000)
    parser.add_argument("--orders", type=int, default=2_500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--as-of", default="2026-06-30")
    parser.add_argument("--work", type=Path, default=Path("/tmp/segflow-bench"))
    parser.add_argument("--pipeline", type=Path, default=PIPELINE)
    parser.add_argument("--pipeline-of", action="append", default=[], metavar="NAME=YAML",
                        help="this variant runs another pipeline (an older commit's tree)")
    parser.add_argument("--layout", choices=["customers", "monthly"], default="customers",
                        help="orders in files by customer (as generated) or by month")
    parser.add_argument("--next-night", action="store_true",
                        help="run each variant as the night after a run of the day before")
    parser.add_argument("--full-run", action="append", default=[], metavar="NAME",
                        help="this variant runs with --full")
    parser.add_argument("--peers", nargs="?", const="duckdb,datafusion", default="",
                        metavar="duckdb,datafusion",
                        help="run the benchmark variant, also in DuckDB and datafusion-python "
                             "(or the peers named)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--peer-memory-limit", metavar="LIMIT",
                        help="the peers' memory pool (8GiB), spilling beyond it")
    args = parser.parse_args()

    variants = []
    limits = {}
    for given in args.binaries:
        name, binary = given.split("=", 1)
        binary, _, limits[name] = binary.partition("@")
        variants.append((name, binary))
    peers = [peer for peer in args.peers.split(",") if peer]
    if args.peers:
        if args.next_night or args.warmup < 1:
            sys.exit("--peers runs first nights, after at least one warm-up round")
        import peers as peer_plans
        args.pipeline = peer_plans.variant(args.pipeline, args.work / "variant")
    args.work.mkdir(parents=True, exist_ok=True)
    data = shop(variants[0][1], args.work, args.customers, args.orders, args.as_of)
    if args.layout == "monthly":
        data = monthly(data)
    own = dict(given.split("=", 1) for given in args.pipeline_of)

    def pipeline_of(name):
        pipeline = Path(own.get(name, args.pipeline))
        if not limits[name]:
            return pipeline
        limited = args.work / f"pipeline-{limits[name]}.yaml"
        # The pipeline's SQL paths are relative to its own folder.
        text = pipeline.read_text().replace("../queries/", f"{pipeline.parent.parent}/queries/")
        limited.write_text(text + f"\nengine:\n  memory_limit: {limits[name]}\n")
        return limited

    for name, binary in variants:
        if not args.next_night:
            continue
        out, state = args.work / f"out-{name}-before", args.work / f"state-{name}-before"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        day_before = str(date.fromisoformat(args.as_of) - timedelta(days=1))
        env = dict(os.environ, SEGFLOW_DATA=str(data), SEGFLOW_OUT=str(out), SEGFLOW_LOG="warn")
        wall, *_ = timed([binary, "run", str(pipeline_of(name)), "--as-of", day_before,
                         "--state", str(state)], env)
        print(f"{name}: the night before ({day_before}) took {wall:.2f} s", flush=True)

    def run_segflow(name, binary, round_):
        out, state = args.work / f"out-{name}", args.work / f"state-{name}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        if args.next_night:
            shutil.copytree(args.work / f"out-{name}-before", out, symlinks=True)
            shutil.copytree(args.work / f"state-{name}-before", state)
        env = dict(os.environ, SEGFLOW_DATA=str(data), SEGFLOW_OUT=str(out), SEGFLOW_LOG="warn")
        full = ["--full"] if name in args.full_run else []
        measured = timed([binary, "run", str(pipeline_of(name)), "--as-of", args.as_of,
                          "--state", str(state)] + full, env)
        record = last_record(binary, state)
        for kind in ("steps", "writes"):
            for timing in record.get(kind, []):
                key = ("write " if kind == "writes" else "") + timing["name"]
                if round_ >= 0:
                    parts[name].setdefault(key, []).append(timing["seconds"])
                if round_ == -args.warmup and timing.get("files"):
                    files = timing["files"]
                    print(f"  {name} {timing['name']}: {files['computed']} files computed, "
                          f"{files['reused']} reused", flush=True)
        return measured

    def run_peer(name, _, round_):
        out = args.work / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        limit = [args.peer_memory_limit] if args.peer_memory_limit else []
        measured = timed([sys.executable, Path(__file__).parent / "peers.py", name,
                          str(plan_file), str(data), str(out)] + limit, dict(os.environ))
        if round_ >= 0:
            for key, spent in json.loads((out / "seconds.json").read_text()).items():
                parts[name].setdefault(key, []).append(spent)
        return measured

    runners = [(name, binary, run_segflow) for name, binary in variants]
    runners += [(name, None, run_peer) for name in peers]
    plan_file = args.work / f"plan-{args.customers}.json"
    measures = {name: [] for name, _, _ in runners}
    parts = {name: {} for name, _, _ in runners}
    first_name, first_binary = variants[0]
    for round_ in range(-args.warmup, args.runs):
        order = runners if round_ < 0 or round_ % 2 == 0 else runners[::-1]
        for name, binary, runner in order:
            measured = runner(name, binary, round_)
            wall, rss, cpu, load = measured
            kind = "warm-up" if round_ < 0 else f"run {round_ + 1}"
            print(f"{kind} {name}: {wall:.2f} s, {rss:,.0f} MiB, CPU {cpu:.2f} s, "
                  f"load {load:.2f} before", flush=True)
            if round_ >= 0:
                measures[name].append(measured)
            if peers and round_ == -args.warmup and name == first_name:
                record = last_record(first_binary, args.work / f"state-{first_name}")
                plan_file.write_text(json.dumps(peer_plans.plan(
                    first_binary, pipeline_of(first_name), args.as_of, record,
                    args.work / f"out-{first_name}", args.work)))
                unmatched = record.get("unmatched", {})
            if peers and round_ == -args.warmup and name in peers:
                # In a process of its own: DuckDB's comparison of 58M rows would grow this
                # one, and every later run, forked from it, would start at that peak RSS.
                compared = subprocess.run(
                    [sys.executable, Path(__file__).parent / "peers.py", "compare",
                     str(args.work / f"out-{first_name}"), str(args.work / f"out-{name}"),
                     args.as_of, json.dumps(unmatched)],
                    check=True, capture_output=True, text=True).stdout
                problems, notes = json.loads(compared)
                for line in notes:
                    print(f"  {name}: {line}", flush=True)
                if problems:
                    sys.exit(f"{name} computed other outputs than {first_name}:\n  "
                             + "\n  ".join(problems))
                print(f"  {name}: every output equal to {first_name}'s, row for row", flush=True)

    first = variants[0][0]
    print(f"\n{args.customers:,} customers / {args.orders:,} orders ({args.layout} layout), "
          f"{args.runs} runs each after {args.warmup} warm-up round(s)")
    print(f"| variant | median wall | runs | median peak RSS | median CPU | load before "
          f"| paired ratio to {first} |")
    # Ratios are taken run by run (a / b of the same round), then their median.
    print("|---|---|---|---|---|---|---|")
    seconds = {name: [m[0] for m in runs] for name, runs in measures.items()}
    for name, runs in measures.items():
        ratios = [a / b for a, b in zip(seconds[name], seconds[first])]
        walls = ", ".join(f"{s:.2f}" for s in seconds[name])
        loads = [m[3] for m in runs]
        limit = limits.get(name) or (name in peers and args.peer_memory_limit)
        limit = f" (memory_limit {limit})" if limit else ""
        print(f"| {name}{limit} | {statistics.median(seconds[name]):.2f} s | {walls} | "
              f"{statistics.median(m[1] for m in runs):,.0f} MiB | "
              f"{statistics.median(m[2] for m in runs):.2f} s | "
              f"{min(loads):.2f}–{max(loads):.2f} | {statistics.median(ratios):.2f} |")
    for name, _ in variants:
        for peer in peers:
            ratios = [a / b for a, b in zip(seconds[name], seconds[peer])]
            memory = [a[1] / b[1] for a, b in zip(measures[name], measures[peer])]
            print(f"{name} / {peer}: median paired ratio {statistics.median(ratios):.2f} "
                  f"(range {min(ratios):.2f}–{max(ratios):.2f}), peak memory "
                  f"{statistics.median(memory):.2f}")
    print("\nmedian seconds per step, source and output write (over 0.1 s in some run):")
    names = sorted({key for p in parts.values() for key in p},
                   key=lambda k: (k.split(" ")[0] in ("write", "source", "check", "unmatched"), k))
    print("| part | " + " | ".join(parts) + " |")
    print("|---" * (len(parts) + 1) + "|")
    for key in names:
        values = [statistics.median(p[key]) if key in p else None for p in parts.values()]
        if max((v or 0) for v in values) < 0.1:
            continue
        cells = " | ".join("" if v is None else f"{v:.2f}" for v in values)
        print(f"| {key} | {cells} |")


if __name__ == "__main__":
    main()

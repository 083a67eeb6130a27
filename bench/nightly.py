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
that a spilling run and a free one are paired in one session.

Incremental nights: with --layout monthly the shop's orders are one file per month (as a
nightly export writes them). With --next-night every variant first runs the day before
(untimed), and each timed run starts from a copy of that run's state (the results its
incremental steps kept) and outputs (which segment changes and win-back cooldowns read):
a normal night, which computes only the files changed since, or with rows after that day.
A variant named by --full-run passes `--full`, and so computes every file again: the same
night without what earlier nights kept. Without --next-night every run starts empty.

With --peers, DuckDB and raw DataFusion (datafusion-python) run the same SQL in each round
too (bench/peers.py), on plans rendered by the first binary. Shops are generated once per
size (by the first binary) under --work and reused. Standard library only, but for the
peers.
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
    """Runs `command`; returns (seconds, peak RSS in MiB). Fails loudly on a failed run."""
    started = time.monotonic()
    with open(os.devnull, "wb") as quiet:
        child = subprocess.Popen(command, env=env, stdout=quiet, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        errors = child.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{errors[-4000:]}")
    return seconds, usage.ru_maxrss / 1024


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
    parser.add_argument("--peers", action="store_true",
                        help="also run the SQL in DuckDB and datafusion-python")
    args = parser.parse_args()

    variants = []
    limits = {}
    for given in args.binaries:
        name, binary = given.split("=", 1)
        binary, _, limits[name] = binary.partition("@")
        variants.append((name, binary))
    peers = ["duckdb", "datafusion"] if args.peers else []
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
        wall, _ = timed([binary, "run", str(pipeline_of(name)), "--as-of", day_before,
                         "--state", str(state)], env)
        print(f"{name}: the night before ({day_before}) took {wall:.2f} s", flush=True)

    plan_file = args.work / f"plan-{args.customers}.json"
    seconds = {name: [] for name, _ in variants + [(p, None) for p in peers]}
    memory = {name: [] for name in seconds}
    parts = {name: {} for name, _ in variants}
    for run in range(args.runs):
        for name, binary in variants:
            out, state = args.work / f"out-{name}", args.work / f"state-{name}"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(state, ignore_errors=True)
            if args.next_night:
                shutil.copytree(args.work / f"out-{name}-before", out, symlinks=True)
                shutil.copytree(args.work / f"state-{name}-before", state)
            env = dict(os.environ, SEGFLOW_DATA=str(data), SEGFLOW_OUT=str(out), SEGFLOW_LOG="warn")
            full = ["--full"] if name in args.full_run else []
            wall, rss = timed([binary, "run", str(pipeline_of(name)), "--as-of", args.as_of,
                               "--state", str(state)] + full, env)
            seconds[name].append(wall)
            memory[name].append(rss)
            record = last_record(binary, state)
            for kind in ("steps", "writes"):
                for timing in record.get(kind, []):
                    key = ("write " if kind == "writes" else "") + timing["name"]
                    parts[name].setdefault(key, []).append(timing["seconds"])
                    if run == 0 and timing.get("files"):
                        files = timing["files"]
                        print(f"  {name} {timing['name']}: {files['computed']} files computed, "
                              f"{files['reused']} reused", flush=True)
            print(f"run {run + 1} {name}: {wall:.2f} s, {rss:,.0f} MiB", flush=True)
        if peers and run == 0:
            import peers as peer_plans
            first_name, first_binary = variants[0]
            record = last_record(first_binary, args.work / f"state-{first_name}")
            plan_file.write_text(json.dumps(peer_plans.plan(
                first_binary, pipeline_of(first_name), args.as_of, record, args.work / f"out-{first_name}",
                args.work)))
        for name in peers:
            out = args.work / f"out-{name}"
            shutil.rmtree(out, ignore_errors=True)
            wall, rss = timed([sys.executable, Path(__file__).parent / "peers.py", name,
                               str(plan_file), str(data), str(out)], dict(os.environ))
            seconds[name].append(wall)
            memory[name].append(rss)
            print(f"run {run + 1} {name}: {wall:.2f} s, {rss:,.0f} MiB", flush=True)
            if run == 0:
                differ = peer_plans.differing_counts(args.work / f"out-{variants[0][0]}", out,
                                                    args.as_of)
                for table, (ours, theirs) in differ.items():
                    print(f"  {name} wrote {theirs:,} rows of {table}, segflow {ours:,}")

    first = variants[0][0]
    print(f"\n{args.customers:,} customers / {args.orders:,} orders ({args.layout} layout), "
          f"{args.runs} runs each")
    print(f"| variant | median wall | runs | median peak RSS | paired ratio to {first} |")
    # Ratios are taken run by run (a / b of the same round), then their median.
    print("|---|---|---|---|---|")
    for name in seconds:
        ratios = [a / b for a, b in zip(seconds[name], seconds[first])]
        runs = ", ".join(f"{s:.2f}" for s in seconds[name])
        limit = f" (memory_limit {limits[name]})" if limits.get(name) else ""
        print(f"| {name}{limit} | {statistics.median(seconds[name]):.2f} s | {runs} | "
              f"{statistics.median(memory[name]):,.0f} MiB | {statistics.median(ratios):.2f} |")
    for name, _ in variants:
        for peer in peers:
            ratios = [a / b for a, b in zip(seconds[name], seconds[peer])]
            print(f"{name} / {peer}: median paired ratio {statistics.median(ratios):.2f}")
    print("\nmedian seconds per step and output write (over 0.1 s in some variant):")
    names = sorted({key for p in parts.values() for key in p},
                   key=lambda k: (k.startswith("write "), k))
    print("| part | " + " | ".join(name for name, _ in variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    for key in names:
        values = [statistics.median(parts[n][key]) if key in parts[n] else None
                  for n, _ in variants]
        if max((v or 0) for v in values) < 0.1:
            continue
        cells = " | ".join("" if v is None else f"{v:.2f}" for v in values)
        print(f"| {key} | {cells} |")


if __name__ == "__main__":
    main()

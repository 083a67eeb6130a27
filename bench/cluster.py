#!/usr/bin/env python3
"""Times the shipped nightly pipeline in-process and on a one-machine Ballista cluster.

Both read the same shop from, and publish to, an S3-protocol server on loopback (s3s-fs's
binary: `cargo install s3s-fs --version 0.14.1 --features binary`), since a cluster run
refuses local paths. The cluster is `segflow cluster scheduler` and two `segflow cluster
executor`s of the same binary. Runs alternate (in-process, then cluster) so that each pair
meets the same machine; every run starts from empty outputs and state. Prints the median
wall time and client peak memory of each, and the median of the paired ratios. Nothing here
is run by the tests.

    python3 bench/cluster.py --customers 1000000 --orders 10000000 --runs 3 \\
        --s3s-fs ~/.cargo/bin/s3s-fs target/release/segflow

With --memory-limit, the run in process has that `engine.memory_limit` and each executor
`--executor-memory-limit` (half of it, say, for two); --pipeline runs another pipeline (the
benchmark variant of bench/peers.py, for one).
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nightly import PIPELINE, REPO, shop, timed  # noqa: E402

KEY, SECRET = "segflow-bench", "segflow-bench-secret"


def last_record(binary, state, env):
    out = subprocess.run([binary, "runs", "--json", "--state", state], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def peak_rss(pid):
    """A live process's peak resident memory in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def split_run(record):
    """A run's wall time in its steps (materialised to scratch or the cache), its staged
    writes, and the rest: planning, checks, listings and the publication's commit."""
    seconds = {kind: sum(t["seconds"] for t in record[kind]) for kind in ("steps", "writes")}
    started, ended = (datetime.fromisoformat(record[k]) for k in ("started_at", "ended_at"))
    whole = (ended - started).total_seconds()
    return {"steps": seconds["steps"], "writes": seconds["writes"],
            "the rest": whole - seconds["steps"] - seconds["writes"], "run": whole}


LOG_TIME = re.compile(r"^(\S+Z)\s")
TASK = re.compile(r"Finished task : \[TID (\w+)/(\d+)\.\d+/(\d+)\.\d+\] in ([\d.]+)(µs|ms|s)")
JOB = re.compile(r"Job (submitted|finished successfully): \[(\w+)\]")


def lines_within(path, window):
    for line in path.read_text(errors="replace").splitlines():
        stamp = LOG_TIME.match(line)
        if stamp and window[0] <= datetime.fromisoformat(stamp[1]) <= window[1]:
            yield datetime.fromisoformat(stamp[1]), line


def ballista_jobs(logs, window):
    """Counts the jobs, stages and tasks of one run from the scheduler's and executors' logs."""
    opened, job_seconds = {}, 0.0
    for stamp, line in lines_within(logs / "scheduler.log", window):
        if job := JOB.search(line):
            if job[1] == "submitted":
                opened[job[2]] = stamp
            elif job[2] in opened:
                job_seconds += (stamp - opened[job[2]]).total_seconds()
    scale = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}
    stages, tasks, per_executor = set(), 0, []
    for log in sorted(logs.glob("executor-*.log")):
        busy = 0.0
        for _, line in lines_within(log, window):
            if task := TASK.search(line):
                stages.add((task[1], task[2]))
                tasks += 1
                busy += float(task[4]) * scale[task[5]]
        per_executor.append(busy)
    return {"jobs": len(opened), "stages": len(stages), "tasks": tasks,
            "job_seconds": job_seconds, "task_seconds": sum(per_executor),
            "per_executor": per_executor}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until_listening(port):
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nothing listens on {port}")
            time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=250_000)
    parser.add_argument("--orders", type=int, default=2_500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--as-of", default="2026-06-30")
    parser.add_argument("--work", type=Path, default=Path("/tmp/segflow-bench"))
    parser.add_argument("--s3s-fs", type=Path, required=True)
    parser.add_argument("--pipeline", type=Path, default=PIPELINE)
    parser.add_argument("--memory-limit", metavar="LIMIT",
                        help="engine.memory_limit of the run in process (8GiB)")
    parser.add_argument("--executor-memory-limit", metavar="LIMIT",
                        help="each executor's --memory-limit (4GiB)")
    parser.add_argument("--variants", default="in-process,cluster",
                        help="the variants to run, of in-process,cluster")
    parser.add_argument("binary", type=Path)
    args = parser.parse_args()
    binary = str(args.binary.resolve())
    root = args.work / "cluster-s3"
    lake = root / "lake"
    raw = f"raw-{args.customers}-{args.orders}"
    if not (lake / raw / "orders").exists():
        data = shop(binary, args.work, args.customers, args.orders, args.as_of)
        lake.mkdir(parents=True, exist_ok=True)
        # Hard links: a 10M-customer shop is 5 GB.
        shutil.copytree(data, lake / raw, copy_function=os.link)
    project = args.work / "cluster-project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(REPO / "queries", project / "queries")
    (project / "pipelines").mkdir(parents=True)
    spec = args.pipeline.read_text() + "\nengine:\n  scratch: s3://lake/t/\n"
    pipelines = {"cluster": spec, "in-process": spec}
    if args.memory_limit:
        pipelines["in-process"] += f"  memory_limit: {args.memory_limit}\n"
    for name, text in pipelines.items():
        (project / "pipelines" / f"{name}.yaml").write_text(text)

    services = []
    try:
        s3_port = free_port()
        services.append(subprocess.Popen(
            [str(args.s3s_fs), "--host", "127.0.0.1", "--port", str(s3_port),
             "--access-key", KEY, "--secret-key", SECRET, str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        until_listening(s3_port)
        scheduler_port = free_port()
        logs = args.work / "cluster-logs"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir()

        def logged(name):
            return dict(stdout=subprocess.DEVNULL, stderr=open(logs / f"{name}.log", "w"))
        services.append(subprocess.Popen(
            [binary, "cluster", "scheduler", "--bind", f"127.0.0.1:{scheduler_port}"],
            **logged("scheduler")))
        until_listening(scheduler_port)
        url = f"df://127.0.0.1:{scheduler_port}"
        for n in range(2):
            work_dir = args.work / f"cluster-executor-{n}"
            shutil.rmtree(work_dir, ignore_errors=True)
            work_dir.mkdir()
            grpc = free_port()
            services.append(subprocess.Popen(
                [binary, "cluster", "executor", "--scheduler", url, "--flight-port",
                 str(free_port()), "--grpc-port", str(grpc), "--work-dir", str(work_dir)]
                + (["--memory-limit", args.executor_memory_limit]
                   if args.executor_memory_limit else []),
                **logged(f"executor-{n}")))
            until_listening(grpc)

        env = dict(os.environ, AWS_ENDPOINT=f"http://127.0.0.1:{s3_port}",
                   AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                   AWS_REGION="us-east-1", SEGFLOW_DATA=f"s3://lake/{raw}", SEGFLOW_LOG="warn")
        variants = {name: [] for name in args.variants.split(",")}
        memory = {name: [] for name in variants}
        for run in range(args.runs):
            for name in variants:
                # s3s-fs keeps a multipart upload's metadata in a file named after the
                # base64 of the key, which overflows a file name past ~130 characters:
                # short prefixes keep the cache files' keys under it.
                short = name[0]
                for folder in (f"m-{short}", f"s-{short}", "t"):
                    shutil.rmtree(lake / folder, ignore_errors=True)
                pipeline = str(project / "pipelines" / f"{name}.yaml")
                command = [binary, "run", pipeline, "--as-of", args.as_of,
                           "--state", f"s3://lake/s-{short}/"]
                if name == "cluster":
                    command += ["--cluster", url]
                started = datetime.now(timezone.utc)
                wall, rss, *_ = timed(command, dict(env, SEGFLOW_OUT=f"s3://lake/m-{short}"))
                if name == "cluster":
                    cluster_window = (started, datetime.now(timezone.utc))
                variants[name].append(wall)
                memory[name].append(rss)
                print(f"run {run + 1} {name}: {wall:.2f} s, client {rss:,.0f} MiB", flush=True)
        records = {name: last_record(binary, f"s3://lake/s-{name[0]}/", env)
                   for name in variants}
        executor_peaks = [peak_rss(service.pid) for service in services[2:]]
    finally:
        for service in services:
            service.kill()
            service.wait()

    print(f"\n{args.customers:,} customers / {args.orders:,} orders, on S3 (s3s-fs, loopback), "
          f"{args.runs} runs each")
    print(f"| variant | median wall | runs | median client peak RSS | paired ratio to {next(iter(variants))} |")
    print("|---|---|---|---|---|")
    base = next(iter(variants.values()))
    for name, walls in variants.items():
        ratio = statistics.median(w / b for w, b in zip(walls, base))
        runs = ", ".join(f"{w:.2f}" for w in walls)
        print(f"| {name} | {statistics.median(walls):.2f} s | {runs} | "
              f"{statistics.median(memory[name]):,.0f} MiB | {ratio:.2f} |")

    print(f"\nexecutors' peak RSS: {', '.join(f'{m:,.0f} MiB' for m in executor_peaks)}")
    print("\nwhere the time goes, last run of each (seconds):")
    print("| part | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    parts = {name: split_run(record) for name, record in records.items()}
    for part in next(iter(parts.values())):
        print(f"| {part} | " + " | ".join(f"{parts[n][part]:.2f}" for n in variants) + " |")
    print("\nper step and output write, last run of each (seconds, over 1 s in some variant):")
    print("| part | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    timings = {name: {("write " if kind == "writes" else "") + t["name"]: t["seconds"]
                      for kind in ("steps", "writes") for t in record.get(kind, [])}
               for name, record in records.items()}
    for part in next(iter(timings.values())):
        if any(timings[n].get(part, 0) > 1 for n in variants):
            print(f"| {part} | " + " | ".join(f"{timings[n].get(part, 0):.2f}" for n in variants)
                  + " |")
    jobs = ballista_jobs(logs, cluster_window)
    print(f"\nthe last cluster run on Ballista: {jobs['jobs']} jobs, {jobs['stages']} stages "
          f"({jobs['stages'] - jobs['jobs']} shuffles), {jobs['tasks']} tasks; "
          f"jobs open {jobs['job_seconds']:.1f} s in all, tasks busy {jobs['task_seconds']:.1f} s "
          f"in all ({', '.join(f'{s:.1f} s' for s in jobs['per_executor'])} per executor)")

if __name__ == "__main__":
    main()

"""`segflow serve` against DuckDB reading the same files (BENCHMARKS.md, "Serving over the
PostgreSQL protocol"). Three parts, each DuckDB's side reading exactly the files the latest
manifest lists:

    bench/serve.py lookups PORT USER PASSWORD OUT [N]
        one customer's segments, N times (default 300) for random customers, each query
        timed on its own in one process, segflow serve (psycopg, server-side parameters)
        and DuckDB (a kept connection, the query with parameters) alternating query by query;
        prints the medians and 95th percentiles in milliseconds.

    bench/serve.py export-served PORT USER PASSWORD
    bench/serve.py export-duckdb OUT
        all of segment_membership into Python tuples: psycopg's binary results from
        segflow serve, or DuckDB's fetchall; for farm-bench to time as whole processes.

The server is started by hand beforehand (a release build), as BENCHMARKS.md says.
"""

import glob
import json
import os
import random
import statistics
import sys
import time


def files(out, table):
    manifests = sorted(glob.glob(os.path.join(out, table, "_segflow", "manifests", "as_of=*.json")))
    with open(manifests[-1]) as f:
        manifest = json.load(f)
    return [os.path.join(out, table, f["path"]) for f in manifest["files"]]


def dsn(port, user, password):
    return f"host=127.0.0.1 port={port} user={user} password={password} dbname=segflow connect_timeout=30"


def lookups(port, user, password, out, n):
    import duckdb
    import psycopg

    membership = files(out, "segment_membership")
    duck = duckdb.connect()
    lookup = "SELECT segment FROM read_parquet(?) WHERE customer_id = ?"
    ids = [row[0] for row in duck.execute(
        "SELECT DISTINCT customer_id FROM read_parquet(?)", [membership]).fetchall()]
    rng = random.Random(42)
    chosen = [rng.choice(ids) for _ in range(n)]
    served, local = [], []
    with psycopg.connect(dsn(port, user, password), autocommit=True) as conn:
        query = "SELECT segment FROM segment_membership WHERE customer_id = %s"
        # One warm-up each: the server's footer cache, DuckDB's first scan.
        conn.execute(query, [chosen[0]], prepare=True).fetchall()
        duck.execute(lookup, [membership, chosen[0]]).fetchall()
        for customer in chosen:
            started = time.perf_counter()
            a = conn.execute(query, [customer], prepare=True).fetchall()
            served.append(time.perf_counter() - started)
            started = time.perf_counter()
            b = duck.execute(lookup, [membership, customer]).fetchall()
            local.append(time.perf_counter() - started)
            assert sorted(a) == sorted(b), (customer, a, b)

    def summary(times):
        ordered = sorted(times)
        return (statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.95)] * 1000)

    s, d = summary(served), summary(local)
    ratios = sorted(x / y for x, y in zip(served, local))
    print(f"lookups: {n} customers, {len(membership)} file(s)")
    print(f"  segflow serve: median {s[0]:.2f} ms, p95 {s[1]:.2f} ms")
    print(f"  DuckDB:        median {d[0]:.2f} ms, p95 {d[1]:.2f} ms")
    print(f"  serve/DuckDB per pair: median {statistics.median(ratios):.2f}")


def export_served(port, user, password):
    import psycopg

    with psycopg.connect(dsn(port, user, password), autocommit=True) as conn:
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT * FROM segment_membership")
            print(len(cur.fetchall()))


def export_duckdb(out):
    import duckdb

    rows = duckdb.connect().execute(
        "SELECT * FROM read_parquet(?)", [files(out, "segment_membership")]).fetchall()
    print(len(rows))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "lookups":
        lookups(args[0], args[1], args[2], args[3], int(args[4]) if len(args) > 4 else 300)
    elif mode == "export-served":
        export_served(*args[:3])
    elif mode == "export-duckdb":
        export_duckdb(args[0])
    else:
        sys.exit(__doc__)

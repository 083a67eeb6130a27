#!/usr/bin/env python3
"""The same nightly SQL run by DuckDB and by raw DataFusion (datafusion-python), for
bench/nightly.py --peers.

`plan` asks a segflow binary for every step of the pipeline as it would run for an as_of
day (`segflow render`: the SQL files with the vars bound, and the steps segflow generates:
segment combinations, segment_membership, segment_catalog), in the order of a recorded
run. `run` then executes that plan in one engine: each step that is read more than once is
computed once into memory, the others are views, and each output is written as zstd
Parquet. Not run by the tests; needs `pip install duckdb "datafusion>=55,<56"`.

What segflow does beyond the SQL (checking source files and keys, the known-customer
filter on segment_membership, which is added here as plain SQL, fenced commits, run
history) is not repeated, so the peers do slightly less work than segflow.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

SOURCES = ("customers", "orders", "order_items", "checkouts")


def plan(binary, pipeline, as_of, record, out_of_segflow, keep):
    """The steps (name, sql, materialise), the outputs, and the empty earlier-publication
    tables, from a segflow run `record` of the same as_of and its published outputs."""
    names = [step["name"] for step in record["steps"]]
    outputs = [write["name"] for write in record["writes"]]
    rendered = {}
    for name in names:
        text = subprocess.run([binary, "render", str(pipeline), name, "--as-of", as_of],
                              check=True, capture_output=True, text=True).stdout
        sql = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        rendered[name] = sql.strip()
    # segflow keeps only the members of `members.table` signed up by the end of as_of
    # ($as_of_end, rendered as an arrow_cast of an instant in customer_features).
    # paid_orders is incremental: segflow cuts orders at the same instant before the SQL
    # sees them, which the peers do not; the shops hold no later orders (generated with
    # --end as_of), and the row counts are checked.
    end = re.search(r"arrow_cast\('([^']+)'", rendered["customer_features"]).group(1)
    rendered["segment_membership"] = (
        f"SELECT m.* FROM ({rendered['segment_membership']}) AS m WHERE m.customer_id IN "
        f"(SELECT customer_id FROM customers WHERE created_at IS NULL OR created_at < "
        f"arrow_cast('{end}', 'Timestamp(µs, \"UTC\")'))")
    steps = []
    for i, name in enumerate(names):
        later = " ".join(rendered[n] for n in names[i + 1:])
        reads = len(re.findall(rf"\b{name}\b", later)) + (name in outputs)
        steps.append({"name": name, "sql": rendered[name], "materialise": reads > 1})
    # Earlier publications are empty tables on a first run: the columns of segflow's
    # output, kept beside the plan (segflow's outputs are replaced run by run).
    earlier = {}
    for name in set(re.findall(r"\b((?:previous|history)_\w+)\b", " ".join(rendered.values()))):
        published = name.split("_", 1)[1]
        files = sorted((Path(out_of_segflow) / published).glob("as_of=*/*.parquet"))
        kept = Path(keep) / f"columns-of-{published}.parquet"
        shutil.copyfile(files[0], kept)
        earlier[name] = str(kept)
    return {"steps": steps, "outputs": outputs, "earlier": earlier}


def duckdb_sql(sql):
    sql = re.sub(r"arrow_cast\('([^']+)',\s*'Timestamp\([^']*\)'\)", r"TIMESTAMPTZ '\1'", sql)
    return re.sub(r"make_array\(([^()]*)\)", r"[\1]", sql)


def run_duckdb(plan, data, out):
    import duckdb
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    # DataFusion divides integers as integers; DuckDB only when told to.
    db.execute("SET integer_division = true")
    for source in SOURCES:
        db.execute(f"CREATE VIEW {source} AS SELECT * FROM read_parquet('{data}/{source}/**/*.parquet')")
    for name, file in plan["earlier"].items():
        db.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{file}') LIMIT 0")
    for step in plan["steps"]:
        kind = "TABLE" if step["materialise"] else "VIEW"
        db.execute(f"CREATE {kind} {step['name']} AS {duckdb_sql(step['sql'])}")
    for table in plan["outputs"]:
        (out / table).mkdir(parents=True, exist_ok=True)
        db.execute(f"COPY (SELECT * FROM {table}) TO '{out}/{table}/part-0.parquet' "
                   "(FORMAT parquet, COMPRESSION zstd)")


def run_datafusion(plan, data, out):
    from datafusion import SessionContext
    ctx = SessionContext()
    for source in SOURCES:
        ctx.register_parquet(source, f"{data}/{source}/")
    for name, file in plan["earlier"].items():
        ctx.register_view(name, ctx.read_parquet(file).limit(0).cache())
    for step in plan["steps"]:
        frame = ctx.sql(step["sql"])
        ctx.register_view(step["name"], frame.cache() if step["materialise"] else frame)
    for table in plan["outputs"]:
        ctx.table(table).write_parquet(str(out / table), compression="zstd")


def differing_counts(segflow_out, peer_out, as_of):
    """Outputs whose row counts differ between segflow's publication of `as_of` and a peer's
    files."""
    import duckdb
    differ = {}
    for folder in sorted(Path(peer_out).iterdir()):
        counts = []
        published = (Path(segflow_out) / folder.name).glob(f"as_of={as_of}/*.parquet")
        for files in published, folder.glob("*.parquet"):
            names = [str(f) for f in files]
            counts.append(duckdb.sql(f"SELECT count(*) FROM read_parquet({names!r})").fetchall()[0][0])
        if counts[0] != counts[1]:
            differ[folder.name] = tuple(counts)
    return differ


def main():
    _, engine, plan_file, data, out = sys.argv
    steps = json.loads(Path(plan_file).read_text())
    {"duckdb": run_duckdb, "datafusion": run_datafusion}[engine](steps, data, Path(out))


if __name__ == "__main__":
    main()

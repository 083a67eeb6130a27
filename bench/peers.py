#!/usr/bin/env python3
"""The same nightly SQL run by DuckDB and by raw DataFusion (datafusion-python), for
bench/nightly.py --peers, and a row-for-row comparison of what they publish with segflow's.

The comparison is of one pipeline run three ways, so it runs the shipped pipeline's
benchmark variant (`variant`): the model steps, the segments that read them, the checks
and the report left out, and `customer_predictions` an empty table of the one column
winback_candidates reads. Every engine then does the same work:

- the SQL `segflow render` prints for each step (vars bound as literals), in the order of a
  recorded segflow run of the same day, with segflow's materialisation: a step segflow
  computed once (its run record has a row count, or it is incremental) is a table, any
  other a view planned into its readers;
- the sources as segflow sees them: each keyed source's version in force at the end of
  the day (docs/sources.md, "Rows that change") by a window query, as a table or a view,
  whichever the peer ran faster; rows without a key refused; per source the rows of no known customer counted (the
  run record's `unmatched`, compared);
- segment_membership kept to the known customers (the `members:` rule);
- each output written as zstd level 3 Parquet in row groups of 131,072 rows, with an as_of
  column when its SQL has none.

Remaining differences: segflow binds a var to the type its use needs (a decimal against a
decimal column), the peers read the rendered literal (`100.0`: DECIMAL(4,1) in DuckDB,
Float64 in DataFusion), which changes no result here; segflow also fences its commits and
records the run.

`compare` checks every output row for row (run_id aside) against segflow's publication.
One difference is known and checked exactly: DuckDB divides a decimal by an integer in
floating point, so `CAST(sum / count AS DECIMAL(14, 2))` can round a quotient that ends in
exactly half a cent down (0.29 / 2 = 0.14). The docs round money half away from zero
(docs/shipped-pipeline.md), which segflow does on the exact quotient: segflow's
average_order_value must equal that rule on every row, and a peer's may differ from it only
by one cent on a quotient of exactly half a cent. Needs `pip install duckdb pyyaml
"datafusion>=55,<56"`; not run by the tests.
"""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODEL_STEPS = ("purchase_histories", "purchase_model", "spend_model", "model_fits",
               "customer_predictions")
# The model step other steps read, as an empty table of what they read of it.
STUBS = {"customer_predictions":
         "SELECT customer_id, CAST(NULL AS DOUBLE) AS predicted_clv_12m\n"
         "FROM customer_features WHERE false\n"}
ROW_GROUP_ROWS = 128 * 1024
RANK = "segflow_version_rank"


def reads(sql, names):
    return any(re.search(rf"\b{name}\b", sql) for name in names)


def variant(pipeline, folder):
    """Writes the benchmark variant of `pipeline` into `folder`; returns its path."""
    import yaml
    spec = yaml.safe_load(Path(pipeline).read_text())
    base = Path(pipeline).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)

    def absolute(entry):
        entry = dict(entry)
        if "sql" in entry:
            entry["sql"] = str((base / entry["sql"]).resolve())
        if "fold" in entry.get("incremental", {}):
            incremental = dict(entry["incremental"])
            incremental["fold"] = str((base / incremental["fold"]).resolve())
            entry["incremental"] = incremental
        return entry

    steps = []
    for step in map(absolute, spec["steps"]):
        if step["name"] in STUBS:
            stub = folder / f"{step['name']}-stub.sql"
            stub.write_text(STUBS[step["name"]])
            steps.append({"name": step["name"], "sql": str(stub)})
        elif step["name"] not in MODEL_STEPS:
            steps.append(step)
    segments, dropped = [], set()
    for segment in map(absolute, spec["segments"]):
        uses = segment.get("all_of", []) + segment.get("any_of", []) + segment.get("none_of", [])
        if ("sql" in segment and reads(Path(segment["sql"]).read_text(), MODEL_STEPS)) \
                or set(uses) & dropped:
            dropped.add(segment["name"])
        else:
            segments.append(segment)
    spec.update(
        steps=steps, segments=segments,
        outputs=[o for o in spec["outputs"] if o["table"] not in MODEL_STEPS])
    for part in ("checks", "report", "schedule"):
        spec.pop(part, None)
    path = folder / "nightly_benchmark.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


def source_views(spec, as_of_end):
    """Per source: the SQL of its table as segflow's steps see it (over `raw_<source>`), and
    the key checks segflow makes of it (each query must return 0)."""
    views, checks = {}, []
    for name, source in spec["sources"].items():
        key, version = source.get("key"), source.get("version")
        views[name] = f"SELECT * FROM raw_{name}"
        if not key:
            continue
        checks.append((f"{name}: rows without {key}",
                       f"SELECT count(*) FROM raw_{name} WHERE {key} IS NULL"))
        if not version:
            checks.append((f"{name}: a repeated {key}",
                           f"SELECT count(*) FROM (SELECT {key} FROM raw_{name} "
                           f"GROUP BY {key} HAVING count(*) > 1) AS repeated"))
            continue
        # In force: the latest version before the end of the day (a NULL time is older
        # than any), or the earliest when there is none before it.
        before = f"({version} IS NULL OR {version} < {as_of_end})"
        views[name] = (
            f"SELECT * EXCLUDE ({RANK}) FROM (SELECT *, row_number() OVER (PARTITION BY {key} "
            f"ORDER BY CASE WHEN {before} THEN 0 ELSE 1 END, "
            f"CASE WHEN {before} THEN {version} END DESC NULLS LAST, {version}) AS {RANK} "
            f"FROM raw_{name}) AS versions WHERE {RANK} = 1")
    return views, checks


def plan(binary, pipeline, as_of, record, out_of_segflow, keep):
    """What a peer runs, from segflow run `record` of the same as_of and its outputs."""
    import yaml
    names = [step["name"] for step in record["steps"]]
    outputs = [write["name"] for write in record["writes"]]
    rendered = {}
    for name in names:
        text = subprocess.run([binary, "render", str(pipeline), name, "--as-of", as_of],
                              check=True, capture_output=True, text=True).stdout
        sql = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        rendered[name] = sql.strip()
    # $as_of_end, as customer_features renders it.
    end = re.search(r"arrow_cast\('([^']+)'", rendered["customer_features"]).group(1)
    as_of_end = f"arrow_cast('{end}', 'Timestamp(µs, \"UTC\")')"
    spec = yaml.safe_load(Path(pipeline).read_text())
    members = spec.get("members", {})
    table, created = members.get("table", "customers"), members.get("created_at", "created_at")
    rendered["segment_membership"] = (
        f"SELECT m.* FROM ({rendered['segment_membership']}) AS m WHERE m.customer_id IN "
        f"(SELECT customer_id FROM {table} WHERE {created} IS NULL OR {created} < {as_of_end})")
    views, checks = source_views(spec, as_of_end)
    # One pass per source, as segflow counts them.
    unmatched = {
        source: f"SELECT count(*) FILTER (WHERE s.customer_id IS NULL) AS without_customer, "
                f"count(*) FILTER (WHERE s.customer_id IS NOT NULL AND k.customer_id IS NULL) "
                f"AS unknown_customer FROM {source} s LEFT JOIN (SELECT DISTINCT customer_id "
                f"FROM {table}) AS k ON k.customer_id = s.customer_id"
        for source in record.get("unmatched", {})}
    steps = [{"name": step["name"], "sql": rendered[step["name"]],
              "materialise": "rows" in step or "files" in step} for step in record["steps"]]
    # Earlier publications are empty tables on a first run, of the columns of segflow's
    # output (kept beside the plan: segflow's outputs are replaced run by run).
    earlier = {}
    for name in set(re.findall(r"\b((?:previous|history)_\w+)\b", " ".join(rendered.values()))):
        published = name.split("_", 1)[1]
        files = sorted((Path(out_of_segflow) / published).glob("as_of=*/*.parquet"))
        kept = Path(keep) / f"columns-of-{published}.parquet"
        shutil.copyfile(files[0], kept)
        earlier[name] = str(kept)
    return {"sources": views, "key_checks": checks, "unmatched": unmatched, "steps": steps,
            "outputs": outputs, "earlier": earlier, "as_of": as_of}


def duckdb_sql(sql):
    sql = re.sub(r"arrow_cast\('([^']+)',\s*'Timestamp\([^']*\)'\)", r"TIMESTAMPTZ '\1'", sql)
    return re.sub(r"make_array\(([^()]*)\)", r"[\1]", sql)


class DuckDb:
    # A view of the rows in force, computed again by each reader: at 1M customers DuckDB
    # ran 1.06x faster and in 0.7x the memory than with a table of them.
    settles_once = False

    def __init__(self, memory_limit, scratch):
        import duckdb
        self.db = duckdb.connect()
        if memory_limit:
            self.db.execute(f"SET memory_limit = '{memory_limit}B'")
            self.db.execute(f"SET temp_directory = '{scratch}'")
        self.db.execute("SET TimeZone = 'UTC'")
        # DataFusion divides integers as integers; DuckDB only when told to.
        self.db.execute("SET integer_division = true")

    def source(self, name, folder):
        self.db.execute(f"CREATE VIEW raw_{name} AS SELECT * FROM "
                        f"read_parquet('{folder}/**/*.parquet', union_by_name = true)")

    def empty_like(self, name, file):
        self.db.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{file}') LIMIT 0")

    def add(self, name, sql, materialise):
        kind = "TABLE" if materialise else "VIEW"
        self.db.execute(f"CREATE {kind} {name} AS {duckdb_sql(sql)}")

    def row(self, sql):
        return self.db.execute(duckdb_sql(sql)).fetchone()

    def write(self, table, folder, as_of):
        folder.mkdir(parents=True, exist_ok=True)
        names = [c for c, *_ in self.db.execute(f"DESCRIBE {table}").fetchall()]
        dated = "" if "as_of" in names else f", DATE '{as_of}' AS as_of"
        self.db.execute(f"COPY (SELECT *{dated} FROM {table}) TO '{folder}/part-0.parquet' (FORMAT "
                        f"parquet, COMPRESSION zstd, COMPRESSION_LEVEL 3, "
                        f"ROW_GROUP_SIZE {ROW_GROUP_ROWS})")


class DataFusion:
    # A table of the rows in force, as segflow keeps them: at 1M customers DataFusion's
    # window over the orders took 23 s, more than segflow's whole night, per reader.
    settles_once = True

    def __init__(self, memory_limit, scratch):
        from datafusion import RuntimeEnvBuilder, SessionContext
        runtime = RuntimeEnvBuilder()
        if memory_limit:
            runtime = runtime.with_fair_spill_pool(memory_limit).with_temp_file_path(scratch)
        self.ctx = SessionContext(runtime=runtime)

    def source(self, name, folder):
        self.ctx.register_parquet(f"raw_{name}", f"{folder}/")

    def empty_like(self, name, file):
        self.ctx.register_view(name, self.ctx.read_parquet(file).limit(0).cache())

    def add(self, name, sql, materialise):
        frame = self.ctx.sql(sql)
        # cache() computes the rows now (collect), so that its time is the step's.
        self.ctx.register_view(name, frame.cache() if materialise else frame)

    def row(self, sql):
        return tuple(self.ctx.sql(sql).to_pylist()[0].values())

    def write(self, table, folder, as_of):
        from datafusion import ParquetWriterOptions
        options = ParquetWriterOptions(compression="zstd(3)", max_row_group_size=ROW_GROUP_ROWS)
        frame = self.ctx.table(table)
        if "as_of" not in frame.schema().names:
            frame = self.ctx.sql(f"SELECT *, DATE '{as_of}' AS as_of FROM {table}")
        frame.write_parquet_with_options(str(folder), options)


def run(engine, plan, data, out):
    """Runs `plan` in `engine`, writing its outputs under `out`, with the rows of no known
    customer (unmatched.json) and the seconds of each source, step and write (seconds.json)."""
    seconds = {}

    def timed(name, work):
        started = time.monotonic()
        result = work()
        seconds[name] = time.monotonic() - started
        return result

    for name in plan["sources"]:
        engine.source(name, f"{data}/{name}")
    for name, sql in plan["sources"].items():
        settled = engine.settles_once and "OVER" in sql
        timed(f"source {name}", lambda: engine.add(name, sql, settled))
    for what, sql in plan["key_checks"]:
        if timed(f"check {what}", lambda: engine.row(sql)[0]):
            sys.exit(f"key check failed: {what}")
    unmatched = {}
    for source, sql in plan["unmatched"].items():
        counts = timed(f"unmatched {source}", lambda: engine.row(sql))
        unmatched[source] = dict(zip(("without_customer", "unknown_customer"), counts))
    for name, file in plan["earlier"].items():
        engine.empty_like(name, file)
    for step in plan["steps"]:
        timed(step["name"], lambda: engine.add(step["name"], step["sql"], step["materialise"]))
    for table in plan["outputs"]:
        timed(f"write {table}", lambda: engine.write(table, out / table, plan["as_of"]))
    (out / "unmatched.json").write_text(json.dumps(unmatched, sort_keys=True))
    (out / "seconds.json").write_text(json.dumps(seconds))


# Per output with an average_order_value: its numerator and denominator in the row.
AVERAGE_ORDER_VALUE = {
    "customer_features": ("net_revenue", "paid_orders"),
    "customer_profile": ("net_revenue", "paid_orders"),
    # The members' paid orders: the buyers' mean times their number, an exact integer.
    "segment_summary": ("revenue", "CAST(round(average_orders * buyers) AS BIGINT)"),
}


def compare(segflow_out, peer_out, as_of, segflow_unmatched):
    """Every output of a peer against segflow's publication of `as_of`, row for row, and
    its unmatched counts against segflow's run record: a list of problems (empty when
    equal), and notes on the known rounding difference."""
    import duckdb
    db = duckdb.connect()
    problems, notes = [], []
    peer_unmatched = json.loads((Path(peer_out) / "unmatched.json").read_text())
    for folder in sorted(p for p in Path(peer_out).iterdir() if p.is_dir()):
        table = folder.name
        ours = sorted(str(f) for f in (Path(segflow_out) / table).glob(f"as_of={as_of}/*.parquet"))
        theirs = sorted(str(f) for f in folder.glob("*.parquet"))
        for alias, files in (("ours", ours), ("theirs", theirs)):
            db.execute(f"CREATE OR REPLACE VIEW {alias} AS SELECT * FROM read_parquet({files!r})")
        columns = [c for c, *_ in db.execute("DESCRIBE ours").fetchall() if c != "run_id"]
        if [c for c, *_ in db.execute("DESCRIBE theirs").fetchall() if c != "run_id"] != columns:
            problems.append(f"{table}: other columns")
            continue
        parts = AVERAGE_ORDER_VALUE.get(table)
        kept = [c for c in columns if not (parts and c == "average_order_value")]
        listed = ", ".join(f'"{c}"' for c in kept)
        rows = [db.execute(f"SELECT count(*) FROM {a}").fetchone()[0] for a in ("ours", "theirs")]
        extra = [db.execute(f"SELECT count(*) FROM (SELECT {listed} FROM {a} EXCEPT ALL "
                            f"SELECT {listed} FROM {b})").fetchone()[0]
                 for a, b in (("ours", "theirs"), ("theirs", "ours"))]
        if rows[0] != rows[1] or any(extra):
            problems.append(f"{table}: {rows[0]:,} rows against {rows[1]:,}; {extra[0]:,} of "
                            f"segflow's and {extra[1]:,} of the peer's are not in the other")
        if not parts:
            continue
        value, count = parts[0], f"NULLIF({parts[1]}, 0)"
        cents = f"CAST({value} * 100 AS HUGEINT)"
        rule = (f"sign({cents}) * ((2 * abs({cents}) + {count}) // (2 * {count}))")
        half = f"(2 * abs({cents})) % (2 * {count}) = {count}"
        off = f"CAST(average_order_value * 100 AS HUGEINT) IS DISTINCT FROM {rule}"
        wrong = db.execute(f"SELECT count(*) FROM ours WHERE {off}").fetchone()[0]
        if wrong:
            problems.append(f"{table}: segflow's average_order_value is not the exact quotient "
                            f"rounded half away from zero on {wrong:,} rows")
        half_cents, other = db.execute(
            f"SELECT count(*) FILTER (WHERE {half} AND abs(CAST(average_order_value * 100 AS "
            f"HUGEINT) - {rule}) = 1), count(*) FILTER (WHERE NOT ({half}) OR abs(CAST("
            f"average_order_value * 100 AS HUGEINT) - {rule}) <> 1) FROM theirs WHERE {off}"
        ).fetchone()
        if other:
            problems.append(f"{table}: the peer's average_order_value is off the rule on "
                            f"{other:,} rows that are not half cents")
        if half_cents:
            notes.append(f"{table}: the peer rounds {half_cents:,} half-cent "
                         f"average_order_values the other way (segflow's follow the rule)")
    if peer_unmatched != segflow_unmatched:
        problems.append(f"rows of no known customer: {peer_unmatched} against segflow's "
                        f"{segflow_unmatched}")
    return problems, notes


def bytes_of(size):
    """`8GiB`, `512MiB` as bytes (segflow's engine.memory_limit notation)."""
    number, unit = re.fullmatch(r"([0-9.]+)\s*([KMGT]i?B)?", size).groups()
    return int(float(number) * 1024 ** ("BKMGT".index((unit or "B")[0])))


def main():
    """peers.py ENGINE PLAN DATA OUT [MEMORY_LIMIT]: a limit (8GiB) bounds the peer's memory
    pool and lets it spill into OUT/../spill-ENGINE. peers.py compare SEGFLOW_OUT PEER_OUT
    AS_OF UNMATCHED_JSON prints compare's problems and notes as JSON."""
    if sys.argv[1] == "compare":
        segflow_out, peer_out, as_of, unmatched = sys.argv[2:]
        print(json.dumps(compare(segflow_out, peer_out, as_of, json.loads(unmatched))))
        return
    engine, plan_file, data, out, *limit = sys.argv[1:]
    memory_limit = bytes_of(limit[0]) if limit else None
    scratch = Path(out).parent / f"spill-{engine}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    steps = json.loads(Path(plan_file).read_text())
    peer = {"duckdb": DuckDb, "datafusion": DataFusion}[engine](memory_limit, scratch)
    run(peer, steps, data, Path(out))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Stock PostgreSQL clients against `segflow serve`, each query's rows compared with DuckDB's
reading of the files the same manifest lists (tests/it/outputs/serve.rs).

    serve_clients.py PORT USER PASSWORD OUT SCHEMA

OUT is the pipeline's output folder; SCHEMA the served pipeline's name. Prints one line per
check and exits non-zero at the first difference. Every connection has a 30 s timeout.
"""

import asyncio
import datetime
import decimal
import glob
import json
import os
import sys

import duckdb

PORT, USER, PASSWORD, OUT, SCHEMA = sys.argv[1:6]
PORT = int(PORT)
DSN = f"host=127.0.0.1 port={PORT} user={USER} password={PASSWORD} dbname=segflow connect_timeout=30"


def latest_manifest(table):
    paths = sorted(glob.glob(os.path.join(OUT, table, "_segflow", "manifests", "as_of=*.json")))
    with open(paths[-1]) as f:
        return json.load(f)


def duckdb_rows(table, where="", params=()):
    """The latest publication of `table` as DuckDB reads its manifest's files, with as_of."""
    manifest = latest_manifest(table)
    files = [os.path.join(OUT, table, f["path"]) for f in manifest["files"]]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    names = [c["name"] for c in manifest["schema"]]
    select = ", ".join(f'"{n}"' for n in names if n != "as_of")
    query = f"SELECT {select}, DATE '{manifest['as_of']}' AS as_of FROM read_parquet(?) {where}"
    return names, con.execute(query, [files, *params]).fetchall()


def normal(value):
    """One value as every client and DuckDB can agree on it."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, (datetime.date, decimal.Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    return value


def as_rows(columns, rows):
    """Rows as sorted lists of (column, value), columns in `columns`' order."""
    return sorted(json.dumps([normal(v) for v in row], default=str) for row in rows)


def expect_same(what, got_columns, got, want_columns, want):
    got_map = [dict(zip(got_columns, r)) for r in got]
    want_map = [dict(zip(want_columns, r)) for r in want]
    columns = [c for c in want_columns]
    got_rows = as_rows(columns, [[r.get(c) for c in columns] for r in got_map])
    want_rows = as_rows(columns, [[r.get(c) for c in columns] for r in want_map])
    if got_rows != want_rows:
        print(f"FAIL {what}: {len(got_rows)} rows, DuckDB {len(want_rows)}", flush=True)
        for g, w in zip(got_rows, want_rows):
            if g != w:
                print(f"  first difference:\n    served {g}\n    duckdb {w}", flush=True)
                break
        sys.exit(1)
    print(f"ok {what}: {len(got_rows)} rows equal DuckDB's", flush=True)


def duckdb_all(table):
    names, rows = duckdb_rows(table)
    return names + ["as_of"] if "as_of" not in names else names, rows


def with_as_of(names):
    return [n for n in names if n != "as_of"] + ["as_of"]


def check_psycopg():
    import psycopg

    with psycopg.connect(DSN) as conn:
        # Server-side parameters (the extended protocol), text and binary results.
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(f"SELECT * FROM {SCHEMA}.customer_profile WHERE paid_orders >= %s", [2])
                columns = [d.name for d in cur.description]
                rows = cur.fetchall()
            names, want = duckdb_rows("customer_profile", "WHERE paid_orders >= ?", [2])
            expect_same(f"psycopg customer_profile (binary={binary})", columns, rows, with_as_of(names), want)
        with conn.cursor() as cur:
            cur.execute("SELECT customer_id, segments FROM customer_profile WHERE customer_id = %s", [1])
            (customer_id, segments), = cur.fetchall()
            assert isinstance(segments, list), f"segments arrive as {type(segments)}, not a list"
            print(f"ok psycopg: customer 1's segments are a list of {len(segments)}", flush=True)
            cur.execute(f"SELECT * FROM {SCHEMA}.segment_membership")
            columns = [d.name for d in cur.description]
            names, want = duckdb_rows("segment_membership")
            expect_same("psycopg segment_membership", columns, cur.fetchall(), with_as_of(names), want)
            cur.execute(f"SELECT output, as_of, rows FROM {SCHEMA}.publications ORDER BY output")
            listed = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
            for table, (as_of, rows) in listed.items():
                manifest = latest_manifest(table)
                assert (str(as_of), rows) == (manifest["as_of"], manifest["rows"]), (table, as_of, rows, manifest["rows"])
            print(f"ok psycopg publications: {len(listed)} outputs as their manifests say", flush=True)


def check_asyncpg():
    import asyncpg

    async def main():
        conn = await asyncpg.connect(host="127.0.0.1", port=PORT, user=USER, password=PASSWORD,
                                     database="segflow", timeout=30)
        try:
            # asyncpg prepares every statement and reads results in binary.
            statement = await conn.prepare(
                f"SELECT * FROM {SCHEMA}.winback_list WHERE net_revenue >= $1 AND last_order_at < $2")
            cutoff = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
            rows = await statement.fetch(decimal.Decimal("10.00"), cutoff)
            columns = [a.name for a in statement.get_attributes()]
            names, want = duckdb_rows("winback_list", "WHERE net_revenue >= ? AND last_order_at < ?",
                                      [decimal.Decimal("10.00"), cutoff])
            expect_same("asyncpg winback_list (prepared, binary)", columns, [tuple(r) for r in rows], with_as_of(names), want)
            types = {a.name: a.type.name for a in statement.get_attributes()}
            expected = {"as_of": "date", "last_order_at": "timestamptz", "net_revenue": "numeric",
                        "email": "text", "customer_id": "int8"}
            for column, type_name in expected.items():
                assert types[column] == type_name, f"{column} arrives as {types[column]}, not {type_name}"
            print(f"ok asyncpg types: {expected}", flush=True)
        finally:
            await asyncio.wait_for(conn.close(), 30)

    asyncio.run(main())


def check_sqlalchemy():
    """Apache Superset's path, on its versions (SQLAlchemy 1.4, psycopg2, pandas 2.1), which
    .ci/run installs in a virtualenv of their own."""
    import pandas
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{PORT}/segflow",
        connect_args={"connect_timeout": 30})
    inspector = sqlalchemy.inspect(engine)
    schemas = inspector.get_schema_names()
    assert SCHEMA in schemas, f"{SCHEMA} not in {schemas}"
    tables = inspector.get_table_names(schema=SCHEMA)
    for table in ("customer_profile", "segment_membership", "history_segment_membership", "publications"):
        assert table in tables, f"{table} not in {tables}"
    columns = {c["name"]: str(c["type"]) for c in inspector.get_columns("customer_profile", schema=SCHEMA)}
    manifest = latest_manifest("customer_profile")
    assert list(columns) == with_as_of([c["name"] for c in manifest["schema"]]), list(columns)
    print(f"ok sqlalchemy inspect: {len(tables)} tables, customer_profile's {len(columns)} columns", flush=True)
    # Decimals as Decimals (pandas would make them floats), to compare them exactly.
    frame = pandas.read_sql(f"SELECT * FROM {SCHEMA}.segment_summary", engine, coerce_float=False)
    names, want = duckdb_rows("segment_summary")
    got = [tuple(None if pandas.isna(v) else v for v in row) for row in frame.itertuples(index=False)]
    got = [tuple(v.to_pydatetime() if hasattr(v, "to_pydatetime") else v for v in row) for row in got]
    expect_same("pandas.read_sql segment_summary", list(frame.columns), got, with_as_of(names), want)
    engine.dispose()


def check_odbc():
    import pyodbc

    connection = pyodbc.connect(
        f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={PORT};DATABASE=segflow;"
        f"UID={USER};PWD={PASSWORD}", timeout=30)
    cursor = connection.cursor()
    tables = [row.table_name for row in cursor.tables(schema=SCHEMA, tableType="TABLE")]
    assert "customer_profile" in tables, tables
    columns = [row.column_name for row in cursor.columns(table="customer_profile", schema=SCHEMA)]
    manifest = latest_manifest("customer_profile")
    assert columns == with_as_of([c["name"] for c in manifest["schema"]]), columns
    print(f"ok odbc: {len(tables)} tables listed, customer_profile's {len(columns)} columns", flush=True)
    cursor.execute(f"SELECT * FROM {SCHEMA}.rfm WHERE r_score = ?", 5)
    got_columns = [d[0] for d in cursor.description]
    got = [tuple(r) for r in cursor.fetchall()]
    names, want = duckdb_rows("rfm", "WHERE r_score = ?", [5])
    expect_same("odbc rfm", got_columns, got, with_as_of(names), want)
    connection.close()


CHECKS = {"psycopg": check_psycopg, "asyncpg": check_asyncpg, "sqlalchemy": check_sqlalchemy,
          "odbc": check_odbc}

if __name__ == "__main__":
    for name in sys.argv[6:] or CHECKS:
        CHECKS[name]()

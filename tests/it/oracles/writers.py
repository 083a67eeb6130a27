"""Rewrites a shop's customers and orders as other tools write Parquet, for sources.rs: the
same rows, split into parts, each part by another writer. Customers also get two nested
columns each writer spells its own way: `address`, a struct (fields in another order, or one
missing), and `attributes`, a map (DuckDB's and pyarrow's; polars has no maps).

Usage: writers.py DATA_DIR
Prints, per customer, the address's country and the `source` attribute the parts hold, as
JSON, for the test to compare with what the pipeline read."""
import glob, json, os, sys
import duckdb, polars as pl, pyarrow as pa, pyarrow.parquet as pq

data = sys.argv[1]


def pyarrow_default(table, path):
    pq.write_table(table, path)


def spark_like(table, path):
    # As Spark writes by default: timestamps as INT96, strings dictionary-encoded, lists as
    # list/element, the oldest format version.
    pq.write_table(table, path, use_deprecated_int96_timestamps=True, use_dictionary=True,
                   use_compliant_nested_type=True, version="1.0")


def large_types(table, path):
    # Large strings and lists, as tables converted from pandas have them, lists as list/item.
    def large(t):
        if pa.types.is_string(t):
            return pa.large_string()
        if pa.types.is_list(t):
            return pa.large_list(large(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, large(f.type), f.nullable) for f in t])
        return t
    schema = pa.schema([pa.field(f.name, large(f.type), f.nullable) for f in table.schema])
    pq.write_table(table.cast(schema), path, use_compliant_nested_type=False)


def duckdb_writer(table, path):
    con = duckdb.connect()
    con.register("t", table)
    con.execute(f"COPY (SELECT * FROM t) TO '{path}' (FORMAT parquet)")


def polars_writer(table, path):
    if "attributes" in table.column_names:
        table = table.drop_columns(["attributes"])
    pl.from_arrow(table).write_parquet(path)


WRITERS = [pyarrow_default, spark_like, large_types, duckdb_writer, polars_writer]


def with_nested(part, i, expected):
    ids = part.column("customer_id").to_pylist()
    countries = part.column("country").to_pylist()
    addresses, attributes = [], []
    for n, (customer, country) in enumerate(zip(ids, countries)):
        city = f"city-{customer}" if n % 3 else None
        if i % 2:
            addresses.append({"city": city, "country_code": country})
        else:
            addresses.append({"country_code": country, "zip": str(customer)})
        source = None if n % 4 == 0 else ["web", "pos", "app"][customer % 3]
        attributes.append([] if source is None else [("source", source), ("tier", "x")])
        expected[customer] = {"country_code": country, "source": source}
    struct = (pa.struct([("city", pa.string()), ("country_code", pa.string())]) if i % 2
              else pa.struct([("country_code", pa.string()), ("zip", pa.string())]))
    part = part.append_column("address", pa.array(addresses, struct))
    return part.append_column("attributes", pa.array(attributes, pa.map_(pa.string(), pa.string())))


expected = {}
for source in ["customers", "orders"]:
    files = sorted(glob.glob(f"{data}/{source}/*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    for f in files:
        os.remove(f)
    n = table.num_rows
    bounds = [n * i // len(WRITERS) for i in range(len(WRITERS) + 1)]
    for i, writer in enumerate(WRITERS):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        if source == "customers":
            part = with_nested(part, i, expected)
            if writer is polars_writer:
                for customer in part.column("customer_id").to_pylist():
                    expected[customer]["source"] = None
        writer(part, f"{data}/{source}/part-{i:02d}-{writer.__name__}.parquet")
print(json.dumps({str(k): v for k, v in expected.items()}))

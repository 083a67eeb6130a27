"""Writes a shop's Parquet sources again as CSV and as newline-delimited JSON, the ways
exports write them, so that a test can check that the same facts read the same.

CSV: a header line, every field quoted where needed, customers with a ';' delimiter, a byte
order mark and a note column holding commas, quotes and line breaks; instants written with a
space and a +hhmm offset in Europe/Oslo (as Shopify's exports write them), checkouts' as
Oslo wall-clock times without an offset; NULL as an empty
field; each table split over two files. JSON: one object per line, instants in UTC with a Z,
NULL as null or as a missing field.

usage: text_sources.py DATA CSV_OUT JSON_OUT
"""

import csv
import datetime
import decimal
import glob
import json
import os
import sys
import zoneinfo

import pyarrow.parquet as pq

OSLO = zoneinfo.ZoneInfo("Europe/Oslo")
TABLES = ["customers", "orders", "order_items", "checkouts"]


def rows_of(data, table):
    rows = []
    for path in sorted(glob.glob(os.path.join(data, table, "**", "*.parquet"), recursive=True)):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def as_utc(value):
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value


def csv_text(value, wall_clock):
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        local = as_utc(value).astimezone(OSLO)
        if wall_clock:
            return local.strftime("%Y-%m-%d %H:%M:%S.%f")
        return local.strftime("%Y-%m-%d %H:%M:%S.%f %z")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def json_value(value):
    if isinstance(value, datetime.datetime):
        return as_utc(value).astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def write_csv(rows, folder, delimiter, bom, extra, wall_clock):
    os.makedirs(folder, exist_ok=True)
    names = list(rows[0].keys()) + ([extra] if extra else [])
    half = (len(rows) + 1) // 2
    for part, chunk in enumerate([rows[:half], rows[half:]]):
        path = os.path.join(folder, f"part-{part}.csv")
        with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as out:
            writer = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(names)
            for row in chunk:
                fields = [csv_text(row[name], wall_clock) for name in rows[0].keys()]
                if extra:
                    fields.append(f'Called on {row["customer_id"]}, "VIP";\nprefers SMS')
                writer.writerow(fields)


def write_json(rows, folder):
    os.makedirs(folder, exist_ok=True)
    half = (len(rows) + 1) // 2
    for part, chunk in enumerate([rows[:half], rows[half:]]):
        with open(os.path.join(folder, f"part-{part}.jsonl"), "w") as out:
            for i, row in enumerate(chunk):
                obj = {k: json_value(v) for k, v in row.items()}
                # Every other NULL is left out, as many exporters do.
                obj = {k: v for k, v in obj.items() if v is not None or i % 2 == 0}
                out.write(json.dumps(obj) + "\n")


def main():
    data, csv_out, json_out = sys.argv[1:4]
    for table in TABLES:
        rows = rows_of(data, table)
        customers = table == "customers"
        write_csv(
            rows,
            os.path.join(csv_out, table),
            ";" if customers else ",",
            bom=customers,
            extra="Note" if customers else None,
            wall_clock=table == "checkouts",
        )
        write_json(rows, os.path.join(json_out, table))


main()

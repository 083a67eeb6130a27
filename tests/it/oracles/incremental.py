"""Lays a shop's orders out as a nightly export does, and changes them as nights go by.
Used by incremental.rs.

usage: incremental.py split DATA [--one-type]
                                        orders as one file per month of ordered_at, in Hive
                                        folders (month=YYYY-MM/), each month stored another
                                        way: naive ms, UTC-aware us, Oslo-aware ns timestamps
                                        (with --one-type, all as UTC-aware us: what
                                        bench/nightly.py --layout monthly gives its peers)
       incremental.py append DATA DAY   a new file of 20 orders placed on DAY (copies of
                                        paid orders, new ids), one by an unknown customer and
                                        one with no time
       incremental.py refund DATA MONTH rewrites MONTH's file: its first 5 paid orders are
                                        refunded in full
       incremental.py delete DATA MONTH removes MONTH's file
"""
import datetime as dt
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

STORED = [
    pa.timestamp("ms"),
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("ns", tz="Europe/Oslo"),
]


def month_files(orders):
    return sorted(orders.glob("month=*/*.parquet"))


def as_utc_us(table):
    """The table with ordered_at as UTC-aware microseconds, whatever it was stored as."""
    column = table.column("ordered_at")
    if column.type.tz is None:
        column = pc.assume_timezone(column, "UTC")
    column = column.cast(pa.timestamp("us", tz="UTC"))
    return table.set_column(table.schema.get_field_index("ordered_at"), "ordered_at", column)


def split(data, one_type):
    orders = data / "orders"
    files = sorted(orders.glob("*.parquet"))
    table = as_utc_us(pq.read_table(files))
    # Whole milliseconds, so that the month stored in ms holds the same instants.
    whole_ms = pc.floor_temporal(table.column("ordered_at"), unit="millisecond")
    table = table.set_column(table.schema.get_field_index("ordered_at"), "ordered_at", whole_ms)
    for file in files:
        file.unlink()
    months = pc.strftime(table.column("ordered_at"), format="%Y-%m")
    for index, month in enumerate(sorted(pc.unique(months).to_pylist())):
        rows = table.filter(pc.equal(months, month))
        stored = STORED[1] if one_type else STORED[index % len(STORED)]
        rows = rows.set_column(
            rows.schema.get_field_index("ordered_at"),
            "ordered_at",
            rows.column("ordered_at").cast(stored),
        )
        folder = orders / f"month={month}"
        folder.mkdir(parents=True)
        pq.write_table(rows, folder / "part-0.parquet")


def append(data, day):
    orders = data / "orders"
    table = pa.concat_tables(
        [as_utc_us(pq.read_table(f, partitioning=None)) for f in month_files(orders)]
    )
    paid = table.filter(pc.equal(table.column("status"), "paid")).slice(0, 20)
    count = paid.num_rows
    first_id = pc.max(table.column("order_id")).as_py() + 1
    placed = dt.datetime.combine(day, dt.time(10, 0), tzinfo=dt.timezone.utc)
    times = [placed + dt.timedelta(minutes=i) for i in range(count)]
    times[-1] = None
    customers = paid.column("customer_id").to_pylist()
    customers[0] = 999_999_999
    new = paid.set_column(
        paid.schema.get_field_index("order_id"),
        "order_id",
        pa.array(range(first_id, first_id + count), pa.int64()),
    )
    new = new.set_column(
        new.schema.get_field_index("ordered_at"),
        "ordered_at",
        pa.array(times, pa.timestamp("us", tz="UTC")),
    )
    new = new.set_column(
        new.schema.get_field_index("customer_id"), "customer_id", pa.array(customers, pa.int64())
    )
    folder = orders / f"month={day:%Y-%m}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(new, folder / f"day-{day:%d}.parquet")


def refund(data, month):
    file = data / "orders" / f"month={month}" / "part-0.parquet"
    table = pq.read_table(file, partitioning=None)
    paid = [s == "paid" for s in table.column("status").to_pylist()]
    chosen = [i for i, p in enumerate(paid) if p][:5]
    totals = table.column("total_amount").to_pylist()
    refunded = table.column("refunded_amount").to_pylist()
    for i in chosen:
        refunded[i] = totals[i]
    table = table.set_column(
        table.schema.get_field_index("refunded_amount"),
        "refunded_amount",
        pa.array(refunded, table.schema.field("refunded_amount").type),
    )
    pq.write_table(table, file)


def main():
    command, data = sys.argv[1], Path(sys.argv[2])
    if command == "split":
        split(data, sys.argv[3:] == ["--one-type"])
    elif command == "append":
        append(data, dt.date.fromisoformat(sys.argv[3]))
    elif command == "refund":
        refund(data, sys.argv[3])
    elif command == "delete":
        (data / "orders" / f"month={sys.argv[3]}" / "part-0.parquet").unlink()
    else:
        raise SystemExit(f"unknown command {command}")


main()

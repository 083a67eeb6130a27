"""Writes one shop several ways: the same instants as naive UTC, UTC-aware, Oslo-aware and
New York-aware timestamps, in ms, us and ns, naive Oslo wall-clock times, and a folder that
mixes them file by file (one file also with int32 ids, decimal(10,2) amounts and large
strings). Used by zones.rs, which expects identical outputs from every copy.

usage: zones.py DATA OUT_ROOT AS_OF

Before writing, the shop gets customers with orders at the edges of the as_of day in UTC and
in Oslo (ids from 9000001, listed in zones.rs), every instant is cut to whole milliseconds (so
that ms files hold the same instants), and instants in Oslo's repeated autumn hour are moved
two hours on (naive Oslo wall-clock times cannot tell the two occurrences apart; zones.rs
tests the rule for such times on its own).
"""
import datetime as dt
import decimal
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

data, out_root, as_of = Path(sys.argv[1]), Path(sys.argv[2]), dt.date.fromisoformat(sys.argv[3])
TABLES = ["customers", "orders", "order_items", "checkouts"]
OSLO, NEW_YORK = "Europe/Oslo", "America/New_York"


def read(name):
    return pq.read_table(sorted((data / name).glob("*.parquet")))


def instant(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


def edge_rows(tables):
    """Customers b1..b6 of zones.rs: one paid order each (b6 none), at the day's edges."""
    day = as_of.isoformat()
    next_day = (as_of + dt.timedelta(days=1)).isoformat()
    before = (as_of - dt.timedelta(days=1)).isoformat()
    # The end of the as_of day in Oslo, for a spring or summer date (UTC+2).
    oslo_end = f"{day}T22:00:00"
    orders = {
        9000001: f"{day}T23:59:59.999",
        9000002: f"{next_day}T00:00:00",
        9000003: f"{day}T21:59:59.999",
        9000004: oslo_end,
        9000005: f"{before}T22:30:00",
    }
    customers = tables["customers"]
    extra = {
        "customer_id": list(range(9000001, 9000007)),
        "email": [f"edge{i}@example.com" for i in range(1, 7)],
        "phone": [None] * 6,
        "created_at": [instant("2025-01-01T00:00:00")] * 5 + [instant(f"{day}T23:30:00")],
        "country": ["NO"] * 6,
        "email_subscribed": [True] * 6,
        "sms_subscribed": [False] * 6,
        "tags": [[] for _ in range(6)],
    }
    extra["updated_at"] = extra["created_at"]
    tables["customers"] = pa.concat_tables(
        [customers, pa.table({k: extra[k] for k in customers.column_names}, schema=customers.schema)]
    )
    orders_table = tables["orders"]
    rows = {
        "order_id": [90000000 + c for c in orders],
        "customer_id": list(orders),
        "ordered_at": [instant(t) for t in orders.values()],
        "total_amount": [decimal.Decimal("10.00")] * len(orders),
        "currency": ["USD"] * len(orders),
        "status": ["paid"] * len(orders),
        "refunded_amount": [decimal.Decimal("0.00")] * len(orders),
        "channel": ["online_store"] * len(orders),
    }
    rows["updated_at"] = rows["ordered_at"]
    tables["orders"] = pa.concat_tables(
        [orders_table, pa.table({k: rows[k] for k in orders_table.column_names}, schema=orders_table.schema)]
    )


def map_timestamps(table, convert):
    columns = []
    for field, column in zip(table.schema, table.columns):
        columns.append(convert(column) if pa.types.is_timestamp(field.type) else column)
    return pa.table(columns, names=table.column_names)


def to_ms_without_oslo_fold(column):
    column = pc.floor_temporal(column, unit="millisecond")
    wall = pc.local_timestamp(column.cast(pa.timestamp("us", OSLO)))
    back = pc.assume_timezone(wall, OSLO, ambiguous="earliest", nonexistent="earliest")
    folded = pc.and_(pc.is_valid(column), pc.not_equal(back.cast(pa.int64()), column.cast(pa.timestamp("us", "UTC")).cast(pa.int64())))
    moved = pc.add(column, pa.scalar(dt.timedelta(hours=2)))
    return pc.if_else(folded, moved, column).cast(pa.timestamp("us", "UTC"))


def aware(unit, zone):
    return lambda column: column.cast(pa.timestamp(unit, zone))


def naive_utc(unit):
    return lambda column: column.cast(pa.timestamp(unit, "UTC")).cast(pa.timestamp(unit))


def naive_wall_clock(unit, zone):
    return lambda column: pc.local_timestamp(column.cast(pa.timestamp(unit, zone)))


def narrow(table):
    """The same values in narrower types: int32 ids, decimal(10,2) amounts, large strings."""
    columns = []
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_int64(field.type):
            column = column.cast(pa.int32())
        elif pa.types.is_decimal(field.type):
            column = column.cast(pa.decimal128(10, 2))
        elif pa.types.is_string(field.type):
            column = column.cast(pa.large_string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def narrowed(convert):
    return lambda table: narrow(map_timestamps(table, convert))


def timestamps(convert):
    return lambda table: map_timestamps(table, convert)


VARIANTS = {
    "utc_us": [timestamps(aware("us", "UTC"))],
    "naive_utc_ms": [timestamps(naive_utc("ms"))],
    "oslo_ns": [timestamps(aware("ns", OSLO))],
    "new_york_ms": [timestamps(aware("ms", NEW_YORK))],
    "naive_oslo_us": [timestamps(naive_wall_clock("us", OSLO))],
    # File by file: UTC us; naive UTC ms with int32 ids, decimal(10,2) amounts and large
    # strings; Oslo ns; New York ms.
    "mixed": [
        timestamps(aware("us", "UTC")),
        narrowed(naive_utc("ms")),
        timestamps(aware("ns", OSLO)),
        timestamps(aware("ms", NEW_YORK)),
    ],
}

tables = {name: read(name) for name in TABLES}
edge_rows(tables)
tables = {name: map_timestamps(t, to_ms_without_oslo_fold) for name, t in tables.items()}
for variant, converts in VARIANTS.items():
    for name, table in tables.items():
        folder = out_root / variant / name
        folder.mkdir(parents=True, exist_ok=True)
        # One file per conversion, each holding a slice of the rows.
        size = -(-table.num_rows // len(converts))
        for i, convert in enumerate(converts):
            part = convert(table.slice(i * size, size))
            pq.write_table(part, folder / f"part-{i}.parquet", version="2.6", coerce_timestamps=None)
print("wrote", ", ".join(VARIANTS))

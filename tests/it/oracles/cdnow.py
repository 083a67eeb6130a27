"""The CDNOW transaction log of the BG/NBD paper as a shop in the shipped pipeline's layout,
for predictions.rs: every purchase an order (paid, at noon UTC of its day, of its dollar
value), every customer a customer known from before the log starts, one order item per
order, no checkouts but one completed with the first order.

usage: cdnow.py DATASETS DATA    DATASETS holds CDNOW_sample.txt (from the `lifetimes` wheel:
                                 master id, sample id 1..2357, YYYYMMDD, CDs, dollars)
"""
import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.timezone.utc


def main(datasets, data):
    purchases = []
    for line in (datasets / "CDNOW_sample.txt").read_text().splitlines():
        _, customer, day, _, dollars = line.split()
        at = dt.datetime.strptime(day, "%Y%m%d").replace(hour=12, tzinfo=UTC)
        purchases.append((int(customer), at, Decimal(dollars).quantize(Decimal("0.01"))))
    customers = sorted({c for c, _, _ in purchases})
    known = dt.datetime(1996, 12, 1, tzinfo=UTC)
    ts = pa.timestamp("us", tz="UTC")
    money = pa.decimal128(12, 2)
    tables = {
        "customers": pa.table({
            "customer_id": pa.array(customers, pa.int64()),
            "email": [f"c{c}@cdnow.test" for c in customers],
            "phone": pa.array([None] * len(customers), pa.string()),
            "created_at": pa.array([known] * len(customers), ts),
            "country": ["US"] * len(customers),
            "email_subscribed": [True] * len(customers),
            "sms_subscribed": [False] * len(customers),
            "updated_at": pa.array([known] * len(customers), ts),
        }),
        "orders": pa.table({
            "order_id": pa.array(range(1, len(purchases) + 1), pa.int64()),
            "customer_id": pa.array([c for c, _, _ in purchases], pa.int64()),
            "ordered_at": pa.array([at for _, at, _ in purchases], ts),
            "total_amount": pa.array([v for _, _, v in purchases], money),
            "currency": ["USD"] * len(purchases),
            "status": ["paid"] * len(purchases),
            "refunded_amount": pa.array([Decimal("0.00")] * len(purchases), money),
            "channel": ["online_store"] * len(purchases),
            "updated_at": pa.array([at for _, at, _ in purchases], ts),
        }),
        "order_items": pa.table({
            "order_id": pa.array(range(1, len(purchases) + 1), pa.int64()),
            "product_id": pa.array([1] * len(purchases), pa.int64()),
            "collection": ["music"] * len(purchases),
        }),
    }
    first = {}
    for c, at, _ in purchases:
        first[c] = min(first.get(c, at), at)
    tables["checkouts"] = pa.table({
        "customer_id": pa.array(customers, pa.int64()),
        "created_at": pa.array([first[c] for c in customers], ts),
        "completed_at": pa.array([first[c] for c in customers], ts),
    })
    for name, table in tables.items():
        (data / name).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, data / name / "part-0.parquet")
    print(f"{len(customers)} customers, {len(purchases)} orders")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

"""Orders in several currencies, for currencies.rs.

  currencies.py land DATA AS_OF    adds to a generated shop (in USD) orders in NOK and SEK,
                                   one with no currency, one in NOK after as_of, and
                                   rates/rates.parquet: NOK and SEK rates with days missing
                                   (the weekend before as_of, a NULL rate) and rates that
                                   make half cents.
  currencies.py early DATA         adds an NOK order before NOK's first rate.
  currencies.py check DATA OUT AS_OF
                                   derives every customer's paid orders and net revenue in
                                   USD from the raw files by the README's rules
                                   ("Currencies", "The shipped pipeline") and compares them
                                   with the published customer_features. Exit 1 on any
                                   difference.
"""
import datetime as dt
import json
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.timezone.utc
SHOP = "USD"
# (currency, day, rate): the shop's currency per unit. 2026-03-28/29 are a weekend.
RATES = [
    ("NOK", "2026-03-20", "0.09500000"), ("NOK", "2026-03-26", "0.50000000"),
    ("NOK", "2026-03-27", "0.09123457"), ("NOK", "2026-03-30", None),
    ("SEK", "2026-03-02", "0.10000000"), ("SEK", "2026-03-30", "0.33333333"),
]
# (order_id, customer_id, ordered_at UTC, total, refunded, currency): customers 1 to 4.
ORDERS = [
    (95_000_001, 1, "2026-03-26T10:00:00", "10.01", None, "NOK"),   # 5.005 -> 5.01
    (95_000_002, 1, "2026-03-29T18:00:00", "100.00", "20.00", "NOK"),  # the 27th's rate
    (95_000_003, 2, "2026-03-30T08:00:00", "99.99", None, "SEK"),
    (95_000_004, 2, "2026-03-31T23:00:00", "45.00", None, "SEK"),   # the 30th's, not the 31st
    (95_000_005, 3, "2026-03-31T12:00:00", "12.34", None, None),    # the shop's
    (95_000_006, 3, "2026-03-31T09:00:00", "300.00", None, "NOK"),  # a NULL rate: the 27th's
    (95_000_007, 4, "2026-04-01T00:00:00", "50.00", None, "NOK"),   # after as_of
    (95_000_008, 4, "2026-03-25T12:00:00", "70.00", None, "USD"),
    (95_000_010, 4, "2026-03-20T00:00:00", "20.00", None, "NOK"),   # NOK's first rate day
]
EARLY = (95_000_009, 4, "2026-03-19T12:00:00", "30.00", None, "NOK")


def orders_file(rows):
    at = lambda text: dt.datetime.fromisoformat(text).replace(tzinfo=UTC)
    money = pa.decimal128(12, 2)
    return pa.table({
        "order_id": pa.array([r[0] for r in rows], pa.int64()),
        "customer_id": pa.array([r[1] for r in rows], pa.int64()),
        "ordered_at": pa.array([at(r[2]) for r in rows], pa.timestamp("us", tz="UTC")),
        "total_amount": pa.array([Decimal(r[3]) for r in rows], money),
        "currency": pa.array([r[5] for r in rows], pa.string()),
        "status": ["paid"] * len(rows),
        "refunded_amount": pa.array([Decimal(r[4]) if r[4] else None for r in rows], money),
        "channel": ["web"] * len(rows),
        "updated_at": pa.array([at(r[2]) for r in rows], pa.timestamp("us", tz="UTC")),
    })


def land(data):
    pq.write_table(orders_file(ORDERS), data / "orders" / "currencies.parquet")
    (data / "rates").mkdir(exist_ok=True)
    pq.write_table(pa.table({
        "currency": [r[0] for r in RATES],
        "day": pa.array([dt.date.fromisoformat(r[1]) for r in RATES], pa.date32()),
        "rate": pa.array([Decimal(r[2]) if r[2] else None for r in RATES], pa.decimal128(18, 8)),
    }), data / "rates" / "rates.parquet")


def cents(amount):
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def check(data, out, as_of):
    end = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), UTC)
    rates = [r for r in pq.read_table(data / "rates").to_pylist() if r["rate"] is not None]
    customers = pq.read_table(data / "customers").to_pylist()
    known = {c["customer_id"] for c in customers if c["created_at"] is None or c["created_at"] < end}
    orders = pq.read_table(data / "orders").to_pylist()
    assert len({o["order_id"] for o in orders}) == len(orders), "one row per order"
    want = {c: [0, Decimal(0)] for c in known}
    for o in orders:
        refunded = o["refunded_amount"] or Decimal(0)
        if (o["status"] != "paid" or o["ordered_at"] >= end or o["customer_id"] not in known
                or (refunded > 0 and refunded >= o["total_amount"])):
            continue
        net = o["total_amount"] - refunded
        currency = o["currency"] or SHOP
        if currency != SHOP:
            # The rate in force on the order's day (UTC, the pipeline's zone): the latest
            # rate of its currency on or before that day.
            day = o["ordered_at"].astimezone(UTC).date()
            in_force = [r for r in rates if r["currency"] == currency and r["day"] <= day]
            rate = max(in_force, key=lambda r: r["day"])["rate"]
            net = cents(net * rate)
        want[o["customer_id"]][0] += 1
        want[o["customer_id"]][1] += net
    manifest = out / "customer_features" / "_segflow" / "manifests" / f"as_of={as_of}.json"
    files = [out / "customer_features" / f["path"] for f in json.loads(manifest.read_text())["files"]]
    published = [row for f in files for row in pq.ParquetFile(f).read().to_pylist()]
    got = {r["customer_id"]: [r["paid_orders"], r["net_revenue"]] for r in published}
    problems = [f"customer {c}: published {got.get(c)}, the rules give {w}"
                for c, w in want.items() if got.get(c) != w]
    problems += [f"customer_features.currency is {r['currency']}" for r in published if r["currency"] != SHOP][:1]
    print("\n".join(problems[:20]) if problems else f"{len(want)} customers' revenue agrees, in {SHOP}")
    for c in (1, 2, 3, 4):
        print(f"customer {c}: {want.get(c)}")
    return 1 if problems else 0


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "land":
        land(Path(rest[0]))
    elif command == "early":
        pq.write_table(orders_file([EARLY]), Path(rest[0]) / "orders" / "early.parquet")
    else:
        sys.exit(check(Path(rest[0]), Path(rest[1]), dt.date.fromisoformat(rest[2])))

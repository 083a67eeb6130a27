"""Rows that change, for versions.rs: a landing that an append-only connector would write,
and the rows in force computed from the README's sentences ("Rows that change"), not from
segflow's code.

usage: versions.py land DATA SEED     writes DATA/customers/ and DATA/orders/ as daily
                                      extraction files (YYYY_MM_DD_<epoch>_0.parquet), each
                                      holding the versions stamped the day before: orders
                                      placed, refunded later, cancelled, re-delivered (in a
                                      later file, or twice in one file), deleted (stubs with
                                      deleted_at and no updated_at), brought back, stamped at
                                      exactly midnight, without a time, tied in time across
                                      files with other amounts, and orders whose first
                                      version was never exported. Files store their
                                      timestamps three ways (naive UTC ms, UTC us, Oslo ns).
       versions.py late ALL LANDED DAY OUT
                                      OUT: the files of LANDED (those there for the night of
                                      DAY), plus the later files of ALL with only their
                                      re-exports: rows of keys LANDED knows, stamped at or
                                      after the end of DAY. By the README, they change nothing
                                      of DAY.
       versions.py check DATA OUT AS_OF
                                      compares the publications of AS_OF (orders_in_force,
                                      customers_in_force, paid_orders) with the rows in force
                                      by the README's rules, for the pipeline's zone
                                      Europe/Oslo. Exit 1 on any difference.
"""
import datetime as dt
import json
import random
import sys
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.parquet as pq

ZONE = ZoneInfo("Europe/Oslo")
UTC = dt.timezone.utc
FIRST = dt.date(2026, 3, 1)
DAYS = 40
STORED = [pa.timestamp("ms"), pa.timestamp("us", tz="UTC"), pa.timestamp("ns", tz="Europe/Oslo")]


def midnight(day):
    """The first instant of `day` in the shop's zone, in UTC."""
    return dt.datetime.combine(day, dt.time(), tzinfo=ZONE).astimezone(UTC)


def whole_seconds(rng, start, end):
    span = int((end - start).total_seconds())
    return start + dt.timedelta(seconds=rng.randrange(max(span, 1)))


def land(data, seed):
    rng = random.Random(seed)
    start, stop = midnight(FIRST), midnight(FIRST + dt.timedelta(days=DAYS))
    customers, orders = [], []  # (export day, row)

    def export_day(stamp):
        """Versions are exported in the next day's file (by the UTC day of their stamp)."""
        return stamp.astimezone(UTC).date() + dt.timedelta(days=1)

    def stamp_of(version):
        return version["updated_at"] or version["deleted_at"] or version["ordered_at"]

    for customer_id in range(1, 121):
        created = whole_seconds(rng, start - dt.timedelta(days=30), stop)
        row = dict(customer_id=customer_id, email=f"c{customer_id}@shop.test",
                   created_at=created, email_subscribed=True, updated_at=created)
        customers.append((export_day(created), row))
        if rng.random() < 0.4:  # unsubscribes later
            later = whole_seconds(rng, created + dt.timedelta(seconds=1), stop)
            customers.append((export_day(later), dict(row, email_subscribed=False, updated_at=later)))

    order_id = 1000
    for _ in range(700):
        order_id += 1
        placed = whole_seconds(rng, start, stop)
        total = Decimal(rng.randrange(500, 40000)) / 100
        base = dict(order_id=order_id, customer_id=rng.randrange(1, 121), ordered_at=placed,
                    total_amount=total, status="paid", refunded_amount=Decimal("0.00"),
                    currency="NOK", updated_at=placed, deleted_at=None)
        versions = [base]
        roll = rng.random()
        later = whole_seconds(rng, placed + dt.timedelta(minutes=1), stop + dt.timedelta(days=5))
        if roll < 0.15:  # refunded, in part or in full
            part = total if rng.random() < 0.5 else (total / 3).quantize(Decimal("0.01"))
            versions.append(dict(base, refunded_amount=part, updated_at=later,
                                 status="refunded" if part == total else "paid"))
        elif roll < 0.22:
            versions.append(dict(base, status="cancelled", updated_at=later))
        elif roll < 0.26:  # deleted: a stub with deleted_at and no updated_at
            versions.append(dict(order_id=order_id, customer_id=None, ordered_at=None,
                                 total_amount=None, status=None, refunded_amount=None,
                                 currency=None, updated_at=None, deleted_at=later))
            if rng.random() < 0.3:  # ... and brought back after
                back = later + dt.timedelta(hours=rng.randrange(1, 72))
                versions.append(dict(base, updated_at=back))
        elif roll < 0.29:  # edited at exactly a midnight of the shop's zone
            day = (placed.astimezone(ZONE) + dt.timedelta(days=rng.randrange(1, 4))).date()
            versions.append(dict(base, refunded_amount=Decimal("1.00"), updated_at=midnight(day)))
        elif roll < 0.31:  # first version without a time, then a refund with one
            versions[0] = dict(base, updated_at=None)
            versions.append(dict(base, refunded_amount=total, status="refunded", updated_at=later))
        elif roll < 0.34:  # the first version was never exported: only the edit
            versions = [dict(base, refunded_amount=Decimal("2.00"), updated_at=later)]
        for version in versions:
            orders.append((export_day(stamp_of(version)), version))
        extra = rng.random()
        if extra < 0.06:  # delivered again, alike, in a later file
            version = rng.choice(versions)
            later_file = export_day(stamp_of(version)) + dt.timedelta(days=rng.randrange(1, 4))
            orders.append((later_file, version))
        elif extra < 0.09:  # delivered twice in one file
            version = rng.choice(versions)
            orders.append((export_day(stamp_of(version)), version))
        elif extra < 0.11 and versions[-1]["updated_at"] is not None:
            # the same time, other amounts, in a later file: that file wins
            version = versions[-1]
            orders.append((export_day(version["updated_at"]) + dt.timedelta(days=2),
                           dict(version, refunded_amount=Decimal("3.00"))))

    write(data / "customers", customers, customer_schema)
    write(data / "orders", orders, order_schema)


def customer_schema(stored):
    return pa.schema([("customer_id", pa.int64()), ("email", pa.string()),
                      ("created_at", stored), ("email_subscribed", pa.bool_()),
                      ("updated_at", stored)])


def order_schema(stored):
    money = pa.decimal128(12, 2)
    return pa.schema([("order_id", pa.int64()), ("customer_id", pa.int64()),
                      ("ordered_at", stored), ("total_amount", money), ("status", pa.string()),
                      ("refunded_amount", money), ("currency", pa.string()),
                      ("updated_at", stored), ("deleted_at", stored)])


def write(folder, rows, schema_of):
    folder.mkdir(parents=True, exist_ok=True)
    by_day = {}
    for day, row in rows:
        by_day.setdefault(day, []).append(row)
    for index, day in enumerate(sorted(by_day)):
        stored = STORED[index % len(STORED)]
        schema = schema_of(stored)
        columns = {}
        for field in schema:
            values = [row[field.name] for row in by_day[day]]
            if pa.types.is_timestamp(field.type) and field.type.tz is None:
                values = [v.astimezone(UTC).replace(tzinfo=None) if v else None for v in values]
            columns[field.name] = pa.array(values, type=field.type)
        epoch = int(dt.datetime.combine(day, dt.time(1), tzinfo=UTC).timestamp() * 1000)
        name = f"{day:%Y_%m_%d}_{epoch}_0.parquet"
        pq.write_table(pa.table(columns, schema=schema), folder / name)


def read_versions(folder, key):
    """Every row of every file, with the file's place in the listing (by path)."""
    rows = []
    for rank, path in enumerate(sorted(folder.glob("*.parquet"))):
        for row in pq.read_table(path).to_pylist():
            for name, value in row.items():
                if isinstance(value, dt.datetime) and value.tzinfo is None:
                    row[name] = value.replace(tzinfo=UTC)  # naive is UTC (the source's zone)
            rows.append((rank, row))
    by_key = {}
    for rank, row in rows:
        by_key.setdefault(row[key], []).append((rank, row))
    return by_key


def in_force(versions, end, deleted):
    """The README's rule: the latest version stamped before `end` (no time is the oldest;
    a deletion without a version time is stamped by its deletion time); with none before
    `end`, the earliest; equal times go to the file listed later. A deletion in force takes
    the key away."""
    def stamp(row):
        return row["updated_at"] or (row.get(deleted) if deleted else None)

    before = [(rank, row) for rank, row in versions if stamp(row) is None or stamp(row) < end]
    oldest = dt.datetime.min.replace(tzinfo=UTC)
    if before:
        rank, row = max(before, key=lambda v: (stamp(v[1]) or oldest, v[0]))
    else:
        rank, row = min(versions, key=lambda v: (stamp(v[1]), -v[0]))
    if deleted and row.get(deleted) is not None:
        return None
    return row


def late(all_files, landed, day, out):
    end = midnight(day + dt.timedelta(days=1))
    for table, key in [("customers", "customer_id"), ("orders", "order_id")]:
        (out / table).mkdir(parents=True, exist_ok=True)
        known = set()
        for path in sorted((landed / table).glob("*.parquet")):
            known.update(pq.read_table(path, columns=[key])[key].to_pylist())
            (out / table / path.name).write_bytes(path.read_bytes())
        for path in sorted((all_files / table).glob("*.parquet")):
            if (landed / table / path.name).exists():
                continue
            rows = pq.read_table(path)
            stamp = rows["updated_at"]
            if "deleted_at" in rows.column_names:
                stamp = pa.compute.coalesce(stamp, rows["deleted_at"])
            stamp = pa.compute.cast(stamp, pa.timestamp("us", tz="UTC")) \
                if stamp.type.tz else pa.compute.assume_timezone(stamp, "UTC")
            after = pa.compute.greater_equal(stamp, pa.scalar(end, pa.timestamp("us", tz="UTC")))
            keep = pa.compute.and_(pa.compute.fill_null(after, False),
                                   pa.compute.is_in(rows[key], pa.array(sorted(known))))
            pq.write_table(rows.filter(keep), out / table / path.name)


def published(out, table, day):
    manifest = out / table / "_segflow" / "manifests" / f"as_of={day}.json"
    listed = json.loads(manifest.read_text())["files"]
    tables = [pq.read_table(out / table / entry["path"]) for entry in listed]
    return pa.concat_tables(tables).to_pylist() if tables else []


def check(data, out, day):
    end = midnight(day + dt.timedelta(days=1))
    problems = []

    def compare(table, expected, found):
        if expected != found:
            missing = sorted(set(expected) - set(found))[:5]
            extra = sorted(set(found) - set(expected))[:5]
            problems.append(f"{table} on {day}: {len(expected)} expected, {len(found)} "
                            f"published; missing {missing}; not expected {extra}")

    orders = {}
    for key, versions in read_versions(data / "orders", "order_id").items():
        row = in_force(versions, end, "deleted_at")
        if row is not None:
            orders[key] = row
    compare("orders_in_force",
            {(k, r["status"], str(r["refunded_amount"])) for k, r in orders.items()},
            {(r["order_id"], r["status"], str(r["refunded_amount"]))
             for r in published(out, "orders_in_force", day)})

    paid = set()
    for key, row in orders.items():
        refunded = row["refunded_amount"] or Decimal(0)
        if (row["ordered_at"] is not None and row["ordered_at"] < end and row["status"] == "paid"
                and not (refunded > 0 and refunded >= row["total_amount"])):
            paid.add((key, row["customer_id"], str(row["total_amount"] - refunded),
                      row["ordered_at"].astimezone(ZONE).date()))
    compare("paid_orders", paid,
            {(r["order_id"], r["customer_id"], str(r["net_amount"]), r["order_date"])
             for r in published(out, "paid_orders", day)})

    customers = {}
    for key, versions in read_versions(data / "customers", "customer_id").items():
        row = in_force(versions, end, None)
        customers[key] = row["email_subscribed"]
    compare("customers_in_force", set(customers.items()),
            {(r["customer_id"], r["email_subscribed"])
             for r in published(out, "customers_in_force", day)})

    for problem in problems:
        print(problem)
    print(f"{day}: {len(orders)} orders in force, {len(paid)} paid, {len(customers)} customers")
    return 1 if problems else 0


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "land":
        land(Path(sys.argv[2]), int(sys.argv[3]))
    elif command == "late":
        late(Path(sys.argv[2]), Path(sys.argv[3]), dt.date.fromisoformat(sys.argv[4]),
             Path(sys.argv[5]))
    elif command == "check":
        sys.exit(check(Path(sys.argv[2]), Path(sys.argv[3]), dt.date.fromisoformat(sys.argv[4])))
    else:
        sys.exit(__doc__)

"""Every day-count and share rule of the shipped segments at its edges, for edges.rs.

  edges.py land DATA AS_OF        writes a hand-made shop: for each rule, customers whose
                                  orders (or checkouts) fall N-1, N and N+1 days before as_of,
                                  at the first and the last microsecond of the day in the
                                  pipeline's zone (Europe/Oslo; as_of just after the switch to
                                  summer time), and buyers at the share rules' cut points.
  edges.py check DATA OUT AS_OF [NAME=VALUE...]
                                  derives every member of those segments and the win-back list
                                  from the README's sentences ("The shipped pipeline") with the
                                  shipped vars (NAME=VALUE: the run's --var overrides), compares
                                  them with what segflow published, and checks that each edge
                                  named below fell on the side its sentence puts it. Exit 1 on
                                  any difference.
  edges.py cuts OUT AS_OF         prints a buy_soon_days and a high_predicted_value_share that
                                  fall exactly on a published expected_next_order_date and on a
                                  tie group's cumulative share, as `N SHARE_NUMERATOR BUYERS`.

The rules here are the README's, in Python: no SQL of ours is read.
"""
import datetime as dt
import decimal
import json
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

ZONE = ZoneInfo("Europe/Oslo")
UTC = dt.timezone.utc
D = decimal.Decimal

# The shipped vars (pipelines/nightly_segments.yaml) that the rules below read.
SHIPPED = {
    "new_customer_days": 30, "recent_days": 30, "high_value_days": 90,
    "high_value_min_spend": D("500.0"), "spend_min": D("100.0"), "spend_max": D("500.0"),
    "orders_min": 3, "orders_max": 5, "range_start": dt.date(2025, 11, 24),
    "range_end": dt.date(2025, 12, 31), "not_since": dt.date(2025, 1, 1), "lapse_days": 120,
    "overdue_factor": 2.0, "abandoned_days": 7, "winback_min_days": 60,
    "winback_max_days": 365, "winback_min_spend": D("50.0"), "churn_p_alive": 0.5,
    "churn_active_days": 365, "high_predicted_value_share": 0.1, "buy_soon_days": 30,
}


def local(day, last=False):
    """The first (or last) microsecond of `day` in the pipeline's zone, as a UTC instant."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=ZONE)
    if last:
        start = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=ZONE)
        start -= dt.timedelta(microseconds=1)
    return start.astimezone(UTC)


class Shop:
    def __init__(self, as_of):
        self.as_of = as_of
        self.names = {}
        self.customers, self.orders, self.checkouts = [], [], []

    def customer(self, name, subscribed=True, created_at=dt.datetime(2023, 1, 1, tzinfo=UTC)):
        customer_id = 8_000_001 + len(self.customers)
        self.names[name] = customer_id
        self.customers.append({
            "customer_id": customer_id, "email": f"{name}@example.com", "phone": None,
            "created_at": created_at, "country": "NO", "email_subscribed": subscribed,
            "sms_subscribed": False, "updated_at": created_at,
        })
        return customer_id

    def buyer(self, name, orders, **customer):
        """`orders`: (days before as_of or a date, amount[, status, refunded_amount])."""
        customer_id = self.customer(name, **customer)
        for i, order in enumerate(orders):
            when, amount, status, refunded = tuple(order) + ("paid", None)[len(order) - 2:]
            day = when if isinstance(when, dt.date) else self.as_of - dt.timedelta(days=when)
            self.order(customer_id, local(day, last=(customer_id + i) % 2 == 1), amount, status, refunded)
        return customer_id

    def order(self, customer_id, at, amount, status="paid", refunded=None):
        self.orders.append({
            "order_id": 1 + len(self.orders), "customer_id": customer_id, "ordered_at": at,
            "total_amount": D(str(amount)), "status": status,
            "refunded_amount": None if refunded is None else D(str(refunded)), "currency": "USD",
            "updated_at": at,
        })

    def checkout(self, customer_id, created_at, completed_at=None):
        self.checkouts.append(
            {"customer_id": customer_id, "created_at": created_at, "completed_at": completed_at})


def land(data, as_of):
    shop = Shop(as_of)
    end = local(as_of + dt.timedelta(days=1))
    # One order d days ago: new_customers and recent_buyers (< 30), high_value_recent's
    # window (< 90), soft_lapse (91 to 180), hard_lapse (> 180), one_time_lapsed (> 120),
    # win-back (60 to 365).
    for d in (0, 29, 30, 31, 59, 60, 61, 90, 91, 92, 119, 120, 121, 179, 180, 181, 364, 365, 366):
        shop.buyer(f"once_{d}", [(d, 100)])
    # The as_of day's edges: its last microsecond counts, the next day's first does not.
    shop.order(shop.customer("as_of_last_us"), end - dt.timedelta(microseconds=1), 100)
    shop.order(shop.customer("after_as_of"), end, 100)
    # high_value_recent: above 500 in the last 90 days.
    for d in (89, 90):
        shop.buyer(f"high_value_{d}", [(d, 600)])
    for amount in ("500.00", "500.01"):
        shop.buyer(f"high_value_spend_{amount}", [(10, amount)])
    shop.buyer("high_value_split", [(89, "250.01"), (90, "250.00")])
    # win-back's spend: at least 50.
    for amount in ("49.99", "50.00", "50.01"):
        shop.buyer(f"winback_spend_{amount}", [(100, amount)])
    shop.buyer("winback_no_consent", [(100, 100)], subscribed=False)
    # spend_band, both ends included; net of a partial refund.
    for amount in ("99.99", "100.00", "100.01", "499.99", "500.00", "500.01"):
        shop.buyer(f"spend_{amount}", [(200, amount)])
    shop.buyer("spend_refunded_to_99.99", [(200, "150.00", "paid", "50.01")])
    shop.buyer("refunded_in_full", [(200, "150.00", "paid", "150.00"), (201, 20, "cancelled")])
    # order_count_band, 3 to 5 orders.
    for n in (2, 3, 5, 6):
        shop.buyer(f"orders_{n}", [(200 + 7 * i, 40) for i in range(n)])
    # ordered_in_range (2025-11-24 to 2025-12-31) and not_ordered_since (2025-01-01).
    for day in ("2025-11-23", "2025-11-24", "2025-11-25", "2025-12-30", "2025-12-31",
                "2026-01-01", "2024-12-31", "2025-01-01", "2025-01-02"):
        shop.buyer(f"ordered_{day}", [(dt.date.fromisoformat(day), 80)])
    # overdue: days since the last order > 2 x the average gap (equal is not overdue).
    for last in (39, 40, 41):
        shop.buyer(f"overdue_{last}", [(last + 20, 70), (last, 70)])
    shop.buyer("overdue_one_day", [(50, 70), (50, 70)])
    # likely_to_churn: repeat buyers whose buying stopped (six orders four weeks apart), last
    # order in the last 365 days or not.
    for d in (364, 365, 366):
        shop.buyer(f"churn_{d}", [(d + 28 * i, 90) for i in range(6)])
    # abandoned_checkout: started in the last 7 days, open at the end of as_of, no paid order
    # after it.
    for d in (6, 7, 8):
        shop.checkout(shop.customer(f"checkout_{d}"), local(as_of - dt.timedelta(days=d), last=d % 2 == 0))
    shop.checkout(shop.customer("checkout_last_us"), end - dt.timedelta(microseconds=1))
    shop.checkout(shop.customer("checkout_after_as_of"), end)
    day_before = local(as_of - dt.timedelta(days=2))
    shop.checkout(shop.customer("checkout_completed_at_end"), day_before, end)
    shop.checkout(shop.customer("checkout_completed_before_end"), day_before, end - dt.timedelta(microseconds=1))
    shop.checkout(shop.buyer("checkout_then_order", [(2, 60)]), local(as_of - dt.timedelta(days=3)))
    shop.checkout(shop.buyer("order_then_checkout", [(4, 60)]), local(as_of - dt.timedelta(days=3)))
    # Sign-up after as_of: nobody; unknown sign-up: a customer.
    shop.buyer("signed_up_after", [(5, 100)], created_at=end)
    shop.buyer("signed_up_unknown", [(5, 100)], created_at=None)
    # big_spenders (10k > 9n): a tenth of the buyers are "whales" above everyone, so the best
    # other buyer has 10k = 9n exactly (out) and the least whale 10k = 9n + 10 (in). Fillers
    # make the buyers a multiple of ten. Whales buy twice, with distinct amounts, so that
    # predicted values differ too.
    buyers = len({o["customer_id"] for o in shop.orders if paid(o, end)} - {shop.names["signed_up_after"]})
    n = 10 * -(-buyers // 9)
    for i in range(n - n // 10 - buyers):
        shop.buyer(f"filler_{i}", [(400 + i, 1)])
    for i in range(n // 10):
        shop.buyer(f"whale_{i}", [(300 + i, 1000 + 10 * i), (20 + i, 1000 + 10 * i)])
    write(data, shop)


def paid(order, end):
    """README: status paid, placed before the end of as_of, not refunded in full (a refund
    above zero that reaches total_amount); a NULL refund is no refund."""
    refunded = order["refunded_amount"] or D(0)
    return (order["status"] == "paid" and order["ordered_at"] < end
            and not (refunded > 0 and refunded >= order["total_amount"]))


def write(data, shop):
    ts = pa.timestamp("us", tz="UTC")
    schemas = {
        "customers": [("customer_id", pa.int64()), ("email", pa.string()), ("phone", pa.string()),
                      ("created_at", ts), ("country", pa.string()), ("email_subscribed", pa.bool_()),
                      ("sms_subscribed", pa.bool_()), ("updated_at", ts)],
        "orders": [("order_id", pa.int64()), ("customer_id", pa.int64()), ("ordered_at", ts),
                   ("total_amount", pa.decimal128(12, 2)), ("status", pa.string()),
                   ("refunded_amount", pa.decimal128(12, 2)), ("currency", pa.string()),
                   ("updated_at", ts)],
        "checkouts": [("customer_id", pa.int64()), ("created_at", ts), ("completed_at", ts)],
        "order_items": [("order_id", pa.int64()), ("product_id", pa.int64()), ("collection", pa.string())],
    }
    rows = {"customers": shop.customers, "orders": shop.orders, "checkouts": shop.checkouts,
            "order_items": [{"order_id": o["order_id"], "product_id": 9, "collection": "other"} for o in shop.orders]}
    for table, columns in schemas.items():
        folder = data / table
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*"):
            old.unlink()
        pq.write_table(pa.Table.from_pylist(rows[table], schema=pa.schema(columns)), folder / "part-0.parquet")
    (data / "edges.json").write_text(json.dumps(shop.names))


def read(folder):
    return pq.read_table(sorted(Path(folder).glob("*.parquet"))).to_pylist()


def published(out, table, as_of):
    """The rows of a publication, from the files its manifest lists (a date run again leaves
    the files it replaced until vacuum)."""
    manifest = Path(out) / table / "_segflow" / "manifests" / f"as_of={as_of}.json"
    files = [Path(out) / table / f["path"] for f in json.loads(manifest.read_text())["files"]]
    return [row for f in files for row in pq.ParquetFile(f).read().to_pylist()]


def expected_members(data, out, as_of, v):
    """segment -> set of customer_id, from the README's sentences."""
    end = local(as_of + dt.timedelta(days=1))
    day = lambda t: t.astimezone(ZONE).date()
    known = {c["customer_id"]: c for c in read(data / "customers")
             if c["created_at"] is None or c["created_at"] < end}
    orders = [o for o in read(data / "orders") if paid(o, end) and o["customer_id"] in known]
    net = lambda o: o["total_amount"] - (o["refunded_amount"] or D(0))
    per = {}
    for o in orders:
        per.setdefault(o["customer_id"], []).append(o)
    f = {}
    for c, os in per.items():
        days = [(as_of - day(o["ordered_at"])).days for o in os]
        f[c] = {"orders": len(os), "net": sum(net(o) for o in os), "first": max(days),
                "last": min(days), "last_day": day(max(o["ordered_at"] for o in os)),
                "recent_net": sum(net(o) for o, d in zip(os, days) if d < v["high_value_days"]),
                "days": {day(o["ordered_at"]) for o in os}}
    buyers = set(f)
    members = {
        "prospects": set(known) - buyers,
        "first_time_buyers": {c for c in buyers if f[c]["orders"] == 1},
        "repeat_buyers": {c for c in buyers if f[c]["orders"] >= 2},
        # "within the last N days" means as_of - date < N
        "new_customers": {c for c in buyers if f[c]["first"] < v["new_customer_days"]},
        "recent_buyers": {c for c in buyers if f[c]["last"] < v["recent_days"]},
        "high_value_recent": {c for c in buyers if f[c]["recent_net"] > v["high_value_min_spend"]},
        "spend_band": {c for c in buyers if v["spend_min"] <= f[c]["net"] <= v["spend_max"]},
        "order_count_band": {c for c in buyers if v["orders_min"] <= f[c]["orders"] <= v["orders_max"]},
        "ordered_in_range": {c for c in buyers
                             if any(v["range_start"] <= d <= v["range_end"] for d in f[c]["days"])},
        "not_ordered_since": {c for c in buyers if f[c]["last_day"] < v["not_since"]},
        "one_time_lapsed": {c for c in buyers if f[c]["orders"] == 1 and f[c]["last"] > v["lapse_days"]},
        # "N to M days ago" includes both ends
        "soft_lapse": {c for c in buyers if 91 <= f[c]["last"] <= 180},
        "hard_lapse": {c for c in buyers if f[c]["last"] > 180},
        "overdue": {c for c in buyers if f[c]["orders"] >= 2 and f[c]["first"] > f[c]["last"]
                    and f[c]["last"] > v["overdue_factor"] * (f[c]["first"] - f[c]["last"]) / (f[c]["orders"] - 1)},
    }
    # big_spenders: 10k > 9n, k = buyers with equal or lower net revenue.
    members["big_spenders"] = {
        c for c in buyers if 10 * sum(1 for b in buyers if f[b]["net"] <= f[c]["net"]) > 9 * len(buyers)}
    # abandoned_checkout: started in the last N days, not completed by the end of as_of, no
    # paid order after it.
    members["abandoned_checkout"] = {
        k["customer_id"] for k in read(data / "checkouts")
        if k["customer_id"] in known and k["created_at"] < end
        and (as_of - day(k["created_at"])).days < v["abandoned_days"]
        and (k["completed_at"] is None or k["completed_at"] >= end)
        and not any(o["customer_id"] == k["customer_id"] and o["ordered_at"] > k["created_at"] for o in orders)}
    # The model's segments read its published predictions: the rule under test is the cut.
    predictions = published(out, "customer_predictions", as_of)
    members["likely_to_churn"] = {
        p["customer_id"] for p in predictions
        if p["x"] > 0 and p["p_alive"] < v["churn_p_alive"] and f[p["customer_id"]]["last"] < v["churn_active_days"]}
    members["expected_to_buy_soon"] = {
        p["customer_id"] for p in predictions if p["expected_next_order_date"] is not None
        and p["expected_next_order_date"] <= as_of + dt.timedelta(days=v["buy_soon_days"])}
    clv = [p["predicted_clv_12m"] for p in predictions]
    members["high_predicted_value"] = {
        p["customer_id"] for p in predictions
        if sum(1 for x in clv if x >= p["predicted_clv_12m"]) / len(clv) <= v["high_predicted_value_share"]}
    # Win-back: last paid order 60 to 365 days ago, net revenue at least 50, with consent.
    members["winback_list"] = {
        c for c in buyers if v["winback_min_days"] <= f[c]["last"] <= v["winback_max_days"]
        and f[c]["net"] >= v["winback_min_spend"] and known[c]["email_subscribed"] and known[c]["email"]}
    return members, predictions


# Each edge and the side its README sentence puts it on: (segment, customer, member?).
EDGES = [
    *[(s, f"once_{d}", d < 30) for s in ("new_customers", "recent_buyers") for d in (0, 29, 30, 31)],
    ("recent_buyers", "as_of_last_us", True), ("prospects", "after_as_of", True),
    *[("one_time_lapsed", f"once_{d}", d > 120) for d in (119, 120, 121)],
    *[("soft_lapse", f"once_{d}", 91 <= d <= 180) for d in (90, 91, 92, 179, 180, 181)],
    *[("hard_lapse", f"once_{d}", d > 180) for d in (179, 180, 181)],
    *[("winback_list", f"once_{d}", 60 <= d <= 365) for d in (59, 60, 61, 364, 365, 366)],
    ("high_value_recent", "high_value_89", True), ("high_value_recent", "high_value_90", False),
    ("high_value_recent", "high_value_spend_500.00", False),
    ("high_value_recent", "high_value_spend_500.01", True),
    ("high_value_recent", "high_value_split", False),
    *[("winback_list", f"winback_spend_{a}", a != "49.99") for a in ("49.99", "50.00", "50.01")],
    ("winback_list", "winback_no_consent", False),
    *[("spend_band", f"spend_{a}", a in ("100.00", "100.01", "499.99", "500.00"))
      for a in ("99.99", "100.00", "100.01", "499.99", "500.00", "500.01")],
    ("spend_band", "spend_refunded_to_99.99", False), ("prospects", "refunded_in_full", True),
    *[("order_count_band", f"orders_{n}", 3 <= n <= 5) for n in (2, 3, 5, 6)],
    *[("ordered_in_range", f"ordered_{d}", "2025-11-24" <= d <= "2025-12-31")
      for d in ("2025-11-23", "2025-11-24", "2025-11-25", "2025-12-30", "2025-12-31", "2026-01-01")],
    *[("not_ordered_since", f"ordered_{d}", d < "2025-01-01") for d in ("2024-12-31", "2025-01-01", "2025-01-02")],
    *[("overdue", f"overdue_{d}", d > 40) for d in (39, 40, 41)], ("overdue", "overdue_one_day", False),
    *[("likely_to_churn", f"churn_{d}", d < 365) for d in (364, 365, 366)],
    *[("abandoned_checkout", f"checkout_{d}", d < 7) for d in (6, 7, 8)],
    ("abandoned_checkout", "checkout_last_us", True), ("abandoned_checkout", "checkout_after_as_of", False),
    ("abandoned_checkout", "checkout_completed_at_end", True),
    ("abandoned_checkout", "checkout_completed_before_end", False),
    ("abandoned_checkout", "checkout_then_order", False), ("abandoned_checkout", "order_then_checkout", True),
    ("prospects", "signed_up_unknown", False), ("first_time_buyers", "signed_up_unknown", True),
]


def parse_vars(pairs):
    v = dict(SHIPPED)
    for pair in pairs:
        name, value = pair.split("=", 1)
        v[name] = type(SHIPPED[name])(value) if not isinstance(SHIPPED[name], dt.date) else dt.date.fromisoformat(value)
    return v


def check(data, out, as_of, pairs):
    v = parse_vars(pairs)
    names = json.loads((data / "edges.json").read_text())
    members, _ = expected_members(data, out, as_of, v)
    got = {}
    for row in published(out, "segment_membership", as_of):
        got.setdefault(row["segment"], set()).add(row["customer_id"])
    got["winback_list"] = {row["customer_id"] for row in published(out, "winback_list", as_of)}
    failures = []
    by_id = {i: n for n, i in names.items()}
    for segment, want in members.items():
        have = got.get(segment, set())
        if want != have:
            diff = sorted(by_id.get(c, c) for c in want ^ have)
            failures.append(f"{segment}: {len(want)} by the README, {len(have)} published; differ on {diff[:8]}")
    for segment, name, member in EDGES:
        if (names[name] in members[segment]) != member:
            failures.append(f"{segment}: {name} should {'' if member else 'not '}be a member by the README")
    everyone = set(names.values())
    # (expected_to_buy_soon's cut is reached by the runs edges.rs makes with `cuts`.)
    for segment in ("big_spenders", "high_predicted_value"):
        if not members[segment] or members[segment] == everyone:
            failures.append(f"{segment}: the shop does not reach its cut ({len(members[segment])} members)")
    if "signed_up_after" in {by_id.get(c) for s in got.values() for c in s}:
        failures.append("a customer who signed up after as_of is in a segment")
    print("\n".join(failures) if failures else f"{len(members)} segments agree with the README at their edges")
    return 1 if failures else 0


def cuts(out, as_of):
    """A buy_soon_days equal to a published expected_next_order_date's distance from as_of,
    and a tie group of predicted_clv_12m with its count at or above, for the share rule."""
    predictions = published(out, "customer_predictions", as_of)
    dates = sorted({p["expected_next_order_date"] for p in predictions if p["expected_next_order_date"]})
    clv = sorted((p["predicted_clv_12m"] for p in predictions), reverse=True)
    groups = sorted({x for x in clv if clv.count(x) > 1}, reverse=True)
    tie = groups[0] if groups else clv[len(clv) // 3]
    at_or_above = sum(1 for x in clv if x >= tie)
    print((dates[len(dates) // 2] - as_of).days, at_or_above, len(clv))


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "land":
        land(Path(rest[0]), dt.date.fromisoformat(rest[1]))
    elif command == "check":
        sys.exit(check(Path(rest[0]), Path(rest[1]), dt.date.fromisoformat(rest[2]), rest[3:]))
    else:
        cuts(Path(rest[0]), dt.date.fromisoformat(rest[1]))

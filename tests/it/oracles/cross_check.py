"""An independent cross-check for cross_check.rs, in two steps.

  cross_check.py dirty DATA AS_OF   makes a generated shop look like a real export: NULL
                                    refunds, paid orders refunded in full, orders without a
                                    customer or of an unknown one, customers with no known
                                    sign-up time, blank emails, unknown (NULL) marketing
                                    consent, checkouts completed after
                                    as_of, and orders stored as New York timestamps in ms.
  cross_check.py check DATA OUT AS_OF
                                    DuckDB computes features, segments, a summary and the
                                    win-back list from the raw data with SQL written here from
                                    the README's rules (not the shipped SQL) and compares them
                                    with what segflow published. Exit 1 on any difference.
"""
import datetime as dt
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def rewrite(folder, change):
    for path in sorted(Path(folder).glob("*.parquet")):
        table = change(pq.read_table(path))
        pq.write_table(table, path)


def where(table, mask, column, value):
    """`column` set to `value` (a scalar of its type, or None) on the rows of `mask`."""
    current = table[column]
    replacement = pa.scalar(value, type=current.type)
    return table.set_column(
        table.schema.get_field_index(column), column, pc.if_else(mask, replacement, current)
    )


def every(table, column, n, remainder=0):
    """The rows whose `column` (an integer id) is `remainder` modulo `n`."""
    ids = table[column]
    return pc.equal(pc.subtract(ids, pc.multiply(pc.divide(ids, n), n)), remainder)


def dirty(data, as_of):
    cutoff = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)

    def orders(t):
        t = where(t, every(t, "order_id", 23), "refunded_amount", None)
        full = pc.and_(every(t, "order_id", 97, 1), pc.equal(t["status"], "paid"))
        t = t.set_column(
            t.schema.get_field_index("refunded_amount"),
            "refunded_amount",
            pc.if_else(full, t["total_amount"], t["refunded_amount"]),
        )
        t = where(t, every(t, "order_id", 101, 2), "customer_id", None)
        unknown = pc.add(t["customer_id"], 100_000_000)
        t = t.set_column(
            t.schema.get_field_index("customer_id"),
            "customer_id",
            pc.if_else(every(t, "order_id", 89, 3), unknown, t["customer_id"]),
        )
        at = t.schema.get_field_index("ordered_at")
        in_ms = pc.floor_temporal(t["ordered_at"], unit="millisecond")
        return t.set_column(at, "ordered_at", in_ms.cast(pa.timestamp("ms", "America/New_York")))

    def customers(t):
        t = where(t, every(t, "customer_id", 53), "created_at", None)
        t = where(t, every(t, "customer_id", 41, 1), "email", "  ")
        t = where(t, every(t, "customer_id", 37, 3), "email_subscribed", None)
        t = where(t, every(t, "customer_id", 31, 4), "sms_subscribed", None)
        return where(t, every(t, "customer_id", 43, 2), "email", "")

    def checkouts(t):
        later = pc.and_(every(t, "checkout_id", 7), pc.is_null(t["completed_at"]))
        return where(t, later, "completed_at", cutoff + dt.timedelta(days=1))

    rewrite(data / "orders", orders)
    rewrite(data / "customers", customers)
    rewrite(data / "checkouts", checkouts)


def check(data, out, as_of):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for t in ["customers", "orders", "order_items", "checkouts"]:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}/*.parquet')")
    for t in ["customer_features", "segment_membership", "segment_summary", "winback_list"]:
        con.execute(
            f"CREATE VIEW pub_{t} AS SELECT * FROM read_parquet('{out}/{t}/as_of={as_of}/*.parquet')"
        )
    con.execute(f"""
    CREATE TABLE cutoff AS SELECT (DATE '{as_of}' + INTERVAL 1 DAY)::TIMESTAMPTZ AS t, DATE '{as_of}' AS d;
    -- A paid order: status paid, placed before the end of as_of, not refunded in full; a NULL
    -- refund is no refund.
    CREATE TABLE paid AS
    SELECT o.*, o.total_amount - coalesce(o.refunded_amount, 0) AS net
    FROM orders o
    WHERE o.status = 'paid' AND o.ordered_at < (SELECT t FROM cutoff)
      AND NOT (coalesce(o.refunded_amount, 0) > 0 AND o.refunded_amount >= o.total_amount);
    -- Known customers: signed up before the end of as_of, or at an unknown time.
    CREATE TABLE f AS
    SELECT c.customer_id, nullif(trim(c.email), '') AS email, nullif(trim(c.phone), '') AS phone,
           c.email_subscribed, c.sms_subscribed,
           count(o.order_id) AS paid_orders,
           coalesce(sum(o.net), 0) AS net,
           date_diff('day', max(o.ordered_at AT TIME ZONE 'UTC')::DATE, (SELECT d FROM cutoff)) AS days_last
    FROM customers c
    LEFT JOIN paid o ON o.customer_id = c.customer_id
    WHERE c.created_at IS NULL OR c.created_at < (SELECT t FROM cutoff)
    GROUP BY ALL;
    CREATE TABLE buyers AS SELECT * FROM f WHERE paid_orders > 0;
    """)
    expected = {
        "repeat_buyers": "SELECT customer_id FROM f WHERE paid_orders > 1",
        "prospects": "SELECT customer_id FROM f WHERE paid_orders = 0",
        "soft_lapse": "SELECT customer_id FROM buyers WHERE days_last >= 91 AND days_last <= 180",
        "hard_lapse": "SELECT customer_id FROM buyers WHERE days_last >= 181",
        "big_spenders": """SELECT b.customer_id FROM buyers b
            WHERE 10 * (SELECT count(*) FROM buyers x WHERE x.net <= b.net) > 9 * (SELECT count(*) FROM buyers)""",
        "bought_a_not_b": """SELECT customer_id FROM buyers b WHERE
            EXISTS (SELECT 1 FROM paid o JOIN order_items i USING (order_id)
                    WHERE o.customer_id = b.customer_id AND i.collection = 'outerwear')
            AND NOT EXISTS (SELECT 1 FROM paid o JOIN order_items i USING (order_id)
                    WHERE o.customer_id = b.customer_id AND i.collection = 'knitwear')""",
        "bought_collection": """SELECT DISTINCT o.customer_id FROM paid o JOIN order_items i USING (order_id)
            WHERE i.collection = 'outerwear' AND o.customer_id IN (SELECT customer_id FROM f)""",
        "abandoned_checkout": """SELECT DISTINCT k.customer_id FROM checkouts k
            WHERE k.customer_id IN (SELECT customer_id FROM f)
              AND (k.completed_at IS NULL OR k.completed_at >= (SELECT t FROM cutoff))
              AND k.created_at < (SELECT t FROM cutoff)
              AND date_diff('day', (k.created_at AT TIME ZONE 'UTC')::DATE, (SELECT d FROM cutoff)) <= 6
              AND NOT EXISTS (SELECT 1 FROM paid o WHERE o.customer_id = k.customer_id
                              AND o.ordered_at > k.created_at)""",
        "vip_at_risk": """SELECT customer_id FROM buyers b WHERE days_last >= 91
            AND 10 * (SELECT count(*) FROM buyers x WHERE x.net <= b.net) > 9 * (SELECT count(*) FROM buyers)""",
    }
    failures = []

    def ids(sql):
        return set(r[0] for r in con.sql(sql).fetchall())

    for segment, sql in expected.items():
        want = ids(sql)
        got = ids(f"SELECT customer_id FROM pub_segment_membership WHERE segment = '{segment}'")
        if want != got or not want:
            failures.append(
                f"{segment}: {len(want)} expected, {len(got)} published, differ on {sorted(want ^ got, key=str)[:10]}"
            )
    unknown = ids("""SELECT customer_id FROM pub_segment_membership
        WHERE customer_id IS NULL OR customer_id NOT IN (SELECT customer_id FROM f)""")
    if unknown:
        failures.append(f"segment_membership holds {len(unknown)} unknown customers, e.g. {sorted(unknown, key=str)[:5]}")
    pub = dict((r[0], r[1:]) for r in con.sql("SELECT customer_id, paid_orders, net_revenue FROM pub_customer_features").fetchall())
    mine = dict((r[0], r[1:]) for r in con.sql("SELECT customer_id, paid_orders, net FROM f").fetchall())
    if pub != mine:
        failures.append(f"customer_features differ on {len(set(pub.items()) ^ set(mine.items()))} rows")
    summary = con.sql("SELECT customers, buyers, revenue FROM pub_segment_summary WHERE segment = 'repeat_buyers'").fetchall()
    own = con.sql("SELECT count(*), count(*), sum(net) FROM f WHERE paid_orders > 1").fetchall()
    if summary != own:
        failures.append(f"segment_summary repeat_buyers: published {summary}, computed {own}")
    winback = ids("""SELECT customer_id FROM buyers WHERE days_last BETWEEN 60 AND 365 AND net >= 50
        AND ((email_subscribed AND email IS NOT NULL) OR (sms_subscribed AND phone IS NOT NULL))""")
    listed = ids("SELECT customer_id FROM pub_winback_list")
    if winback != listed or not winback:
        failures.append(f"winback_list: {len(winback)} expected, {len(listed)} published")
    ranks = con.sql("SELECT rank, net_revenue FROM pub_winback_list ORDER BY rank").fetchall()
    if [r[0] for r in ranks] != list(range(1, len(ranks) + 1)) or any(a[1] < b[1] for a, b in zip(ranks, ranks[1:])):
        failures.append("winback_list ranks are not 1..n by falling net revenue")
    print("\n".join(failures) if failures else f"agree on {len(expected)} segments, features, summary and win-back")
    return 1 if failures else 0


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "dirty":
        dirty(Path(sys.argv[2]), dt.date.fromisoformat(sys.argv[3]))
    else:
        sys.exit(check(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]))

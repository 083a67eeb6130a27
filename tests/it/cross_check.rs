//! An independent cross-check at a few thousand customers: DuckDB, running SQL written here
//! from the documented rules (not the shipped SQL), computes features, segments, a summary
//! and the win-back list from the raw data, and must agree exactly with what segflow published.

use std::process::Command;

use crate::common::{AS_OF, Project, outcome};

const CHECK: &str = r#"
import sys, duckdb
data, out, as_of = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
def load(name):
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{data}/{name}/*.parquet')")
for t in ["customers", "orders", "order_items", "checkouts"]:
    load(t)
def published(table):
    con.execute(f"CREATE VIEW pub_{table} AS SELECT * FROM read_parquet('{out}/{table}/as_of={as_of}/*.parquet')")
for t in ["customer_features", "segment_membership", "segment_summary", "winback_list"]:
    published(t)
con.execute(f"""
CREATE TABLE cutoff AS SELECT (DATE '{as_of}' + INTERVAL 1 DAY)::TIMESTAMPTZ AS t, DATE '{as_of}' AS d;
CREATE TABLE f AS
SELECT c.customer_id, c.email, c.phone, c.email_subscribed, c.sms_subscribed,
       count(o.order_id) AS paid_orders,
       coalesce(sum(o.total_amount - o.refunded_amount), 0) AS net,
       date_diff('day', max(o.ordered_at)::DATE, (SELECT d FROM cutoff)) AS days_last,
       date_diff('day', min(o.ordered_at)::DATE, (SELECT d FROM cutoff)) AS days_first
FROM customers c
LEFT JOIN orders o ON o.customer_id = c.customer_id AND o.status = 'paid'
     AND o.ordered_at < (SELECT t FROM cutoff)
WHERE c.created_at < (SELECT t FROM cutoff)
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
      EXISTS (SELECT 1 FROM orders o JOIN order_items i USING (order_id) WHERE o.customer_id = b.customer_id
              AND o.status = 'paid' AND o.ordered_at < (SELECT t FROM cutoff) AND i.collection = 'outerwear')
      AND NOT EXISTS (SELECT 1 FROM orders o JOIN order_items i USING (order_id) WHERE o.customer_id = b.customer_id
              AND o.status = 'paid' AND o.ordered_at < (SELECT t FROM cutoff) AND i.collection = 'knitwear')""",
  "abandoned_checkout": """SELECT DISTINCT k.customer_id FROM checkouts k
      LEFT JOIN orders o ON o.customer_id = k.customer_id AND o.status = 'paid'
           AND o.ordered_at > k.created_at AND o.ordered_at < (SELECT t FROM cutoff)
      WHERE k.completed_at IS NULL AND k.created_at < (SELECT t FROM cutoff)
        AND date_diff('day', k.created_at::DATE, (SELECT d FROM cutoff)) <= 6
      GROUP BY k.customer_id, k.checkout_id HAVING count(o.order_id) = 0""",
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
        failures.append(f"{segment}: {len(want)} expected, {len(got)} published, differ on {sorted(want ^ got)[:10]}")
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
sys.exit(1 if failures else 0)
"#;

#[test]
fn duckdb_computes_the_same_segments_independently() {
    let project = Project::new(4_000, 16_000);
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let check = outcome(
        Command::new("python3")
            .args([
                "-c",
                CHECK,
                project.data().to_str().unwrap(),
                project.out().to_str().unwrap(),
                AS_OF,
            ])
            .output()
            .expect("python3 runs"),
    );
    assert_eq!(check.code, 0, "{check:?}");
}

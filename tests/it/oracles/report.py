"""Checks a `segflow report` page in headless Chromium (driven by Selenium) against what it
claims to show: the published tables read by DuckDB through their manifests, the number of
buyers recomputed from the raw data by the README's rules, and `segflow runs --json`.

usage: report.py PAGE OUT DATA AS_OF PREVIOUS_AS_OF RUNS_JSON SHOTS_DIR

Prints nothing and exits 0 when every check holds; else raises with what differed.
"""

import json
import os
import re
import sys
from datetime import date, timedelta

import duckdb
from selenium.webdriver.common.by import By

from browser import chromium

page, out, data, as_of, previous, runs_json, shots = sys.argv[1:8]
db = duckdb.connect()
db.execute("SET TimeZone = 'UTC'")


def files(table, day):
    """The files of a publication, as its manifest lists them (the atomic way to read)."""
    manifest = os.path.join(out, table, "_segflow", "manifests", f"as_of={day}.json")
    with open(manifest) as f:
        listed = json.load(f)["files"]
    return [os.path.join(out, table, entry["path"]) for entry in listed]


def rows(table, day, query):
    """`query` over one publication of `table`, which it names as `t`."""
    found = files(table, day)
    if not found:
        return []
    listing = ", ".join(f"'{p}'" for p in found)
    return db.execute(query.replace("FROM t", f"FROM read_parquet([{listing}])")).fetchall()


def people(n):
    return f"{n:,}"


def text(element):
    return element.get_attribute("textContent").strip()


def check(condition, message):
    if not condition:
        raise AssertionError(message)


# Buyers by the README's rules, from the raw data: known customers (signed up by the end of
# as_of, or with no sign-up date) with a paid order placed before the end of as_of that was
# not refunded in full.
end = date.fromisoformat(as_of) + timedelta(days=1)
(buyers,) = db.execute(
    f"""
    SELECT COUNT(DISTINCT o.customer_id)
    FROM read_parquet('{data}/orders/**/*.parquet') o
    JOIN read_parquet('{data}/customers/**/*.parquet') c USING (customer_id)
    WHERE (c.created_at IS NULL OR c.created_at < TIMESTAMPTZ '{end} 00:00:00+00')
      AND o.status = 'paid'
      AND o.ordered_at < TIMESTAMPTZ '{end} 00:00:00+00'
      AND NOT (COALESCE(o.refunded_amount, 0) > 0
               AND COALESCE(o.refunded_amount, 0) >= o.total_amount)
    """
).fetchone()
check(buyers > 100, f"the shop has {buyers} buyers")

with open(runs_json) as f:
    runs = [json.loads(line) for line in f if line.strip()]
runs.sort(key=lambda r: r["started_at"], reverse=True)

with open(page, encoding="utf-8") as f:
    html = f.read()
check(
    not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html),
    "the page loads something from the network",
)

driver = chromium(1280, 900)
try:
    driver.get("file://" + page)
    check(
        driver.execute_script("return performance.getEntriesByType('resource').length") == 0,
        "the page fetched resources",
    )
    check(text(driver.find_element(By.ID, "as-of")) == as_of, "the page's date")

    # The grids: 25 cells each, summing to the buyers; each cell as customer_profile has it.
    grids = driver.find_elements(By.CSS_SELECTOR, "figure.grid")
    check(len(grids) == 2, f"{len(grids)} grids")
    for grid, across in zip(grids, ["f_score", "fm_score"]):
        cells = grid.find_elements(By.CSS_SELECTOR, "g.cell")
        check(len(cells) == 25, f"{across}: {len(cells)} cells")
        drawn = {
            (int(c.get_attribute("data-down")), int(c.get_attribute("data-across"))): c
            for c in cells
        }
        total = sum(int(c.get_attribute("data-customers")) for c in cells)
        check(total == buyers, f"{across}: the cells hold {total} buyers, not {buyers}")
        published = rows(
            "customer_profile",
            as_of,
            f"SELECT r_score, {across}, COUNT(*), SUM(net_revenue) FROM t "
            f"WHERE r_score IS NOT NULL GROUP BY ALL",
        )
        check(len(published) > 10, f"{across}: {len(published)} cells published")
        for r, a, n, revenue in published:
            cell = drawn[(r, a)]
            check(
                int(cell.get_attribute("data-customers")) == n,
                f"{across} cell R{r}/{a}: {cell.get_attribute('data-customers')} vs {n}",
            )
            check(
                abs(float(cell.get_attribute("data-revenue")) - float(revenue)) < 0.01,
                f"{across} cell R{r}/{a} revenue",
            )
            shown = [text(t) for t in cell.find_elements(By.CSS_SELECTOR, "text.n")]
            check(shown == [people(n)], f"{across} cell R{r}/{a} shows {shown}")
        outlined = grid.find_elements(By.CSS_SELECTOR, "line.edge")
        check(len(outlined) > 20, f"{across}: {len(outlined)} outline pieces")
        labels = {c.get_attribute("data-label") for c in cells} - {""}
        check(len(labels) >= 8, f"{across}: labels {labels}")

    # The tiles: buyers and revenue in people's numbers, in the data's currency.
    check(text(driver.find_element(By.CSS_SELECTOR, "#tile-buyers .value")) == people(buyers), "tile")
    (revenue,) = rows("customer_profile", as_of, "SELECT SUM(net_revenue) FROM t")[0]
    shown = text(driver.find_element(By.CSS_SELECTOR, "#tile-revenue .value"))
    check(shown == f"${round(float(revenue)):,}", f"revenue tile {shown} vs {revenue}")

    # Segments: each bar's number is segment_summary's, its moves segment_changes', and its
    # line the two publications' sizes.
    summary = dict(rows("segment_summary", as_of, "SELECT segment, customers FROM t"))
    before = dict(rows("segment_summary", previous, "SELECT segment, customers FROM t"))
    moves = {
        (s, c): n
        for s, c, n in rows(
            "segment_changes", as_of, "SELECT segment, change, COUNT(*) FROM t GROUP BY ALL"
        )
    }
    bars = driver.find_elements(By.CSS_SELECTOR, "#segments li.segment")
    check(len(bars) == len(summary), f"{len(bars)} bars, {len(summary)} segments")
    check(any(moves.get((s, "exited"), 0) > 0 for s in summary), "nobody left any segment")
    for bar in bars:
        segment = bar.get_attribute("data-segment")
        n = summary[segment]
        check(int(bar.get_attribute("data-customers")) == n, f"{segment} bar")
        check(text(bar.find_element(By.CSS_SELECTOR, ".n")) == people(n), f"{segment} shown")
        entered, exited = moves.get((segment, "entered"), 0), moves.get((segment, "exited"), 0)
        check(
            (int(bar.get_attribute("data-entered")), int(bar.get_attribute("data-exited")))
            == (entered, exited),
            f"{segment} moves",
        )
        check(
            text(bar.find_element(By.CSS_SELECTOR, ".in")) == f"+{people(entered)}",
            f"{segment} entered shown",
        )
        sizes = bar.find_element(By.CSS_SELECTOR, "svg.spark").get_attribute("data-sizes")
        check(sizes == f"{before[segment]},{n}", f"{segment} line {sizes}")
    shown = [int(b.get_attribute("data-customers")) for b in bars]
    check(shown == sorted(shown, reverse=True), "bars largest first")

    # The portrait table sorts on a click, both ways, numbers as numbers.
    table = driver.find_element(By.ID, "portrait-table")
    check(len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(summary), "portrait rows")
    for column, numeric in [("buyers", True), ("segment", False), ("revenue", True)]:
        heading = table.find_element(By.CSS_SELECTOR, f"th[data-column='{column}']")
        for direction in ["descending", "ascending"]:
            heading.click()
            check(heading.get_attribute("aria-sort") == direction, f"{column} {direction}")
            values = [
                c.get_attribute("data-sort")
                for c in table.find_elements(By.CSS_SELECTOR, f"tbody td[data-column='{column}']")
            ]
            keys = [float(v) for v in values] if numeric else values
            if column == "buyers":
                # What the reader sees is the number sorted by.
                seen = [
                    text(c).replace(",", "")
                    for c in table.find_elements(By.CSS_SELECTOR, f"tbody td[data-column='{column}']")
                ]
                check(seen == [str(int(k)) for k in keys], f"buyers shown {seen}")
            expected = sorted(keys, reverse=direction == "descending")
            if not numeric:
                # The browser's collation (localeCompare), not Python's code points.
                expected = sorted(keys, key=str.casefold, reverse=direction == "descending")
            check(keys == expected, f"{column} {direction}: {keys}")

    # Win-back: the list by R-F group, and who was left out by why.
    listed = dict(rows("winback_list", as_of, "SELECT rf_segment, COUNT(*) FROM t GROUP BY ALL"))
    left_out = dict(
        rows("winback_suppressed", as_of, "SELECT left_out_because, COUNT(*) FROM t GROUP BY ALL")
    )
    check(sum(listed.values()) > 0 and sum(left_out.values()) > 0, f"win-back rows {listed} {left_out}")
    for selector, expected in [("ol.listed", listed), ("ol.suppressed", left_out)]:
        drawn = {
            li.get_attribute("data-value"): int(li.get_attribute("data-customers"))
            for li in driver.find_elements(By.CSS_SELECTOR, f"#winback {selector} li")
        }
        check(drawn == expected, f"win-back {selector}: {drawn} vs {expected}")
    check(
        text(driver.find_element(By.CSS_SELECTOR, "#tile-winback .value"))
        == people(sum(listed.values())),
        "win-back tile",
    )

    # Predictions: churn risk counts and the CLV histogram cover every buyer.
    churn = {
        (k if k is not None else "not rated (one order)"): n
        for k, n in rows("customer_predictions", as_of, "SELECT churn_risk, COUNT(*) FROM t GROUP BY ALL")
    }
    drawn = {
        li.get_attribute("data-value"): int(li.get_attribute("data-customers"))
        for li in driver.find_elements(By.CSS_SELECTOR, "#predictions ol.churn li")
    }
    check(drawn == churn, f"churn {drawn} vs {churn}")
    (valued,) = rows(
        "customer_predictions", as_of, "SELECT COUNT(*) FROM t WHERE predicted_clv_12m IS NOT NULL"
    )[0]
    bins = driver.find_elements(By.CSS_SELECTOR, "#predictions rect.bin")
    binned = sum(int(b.get_attribute("data-customers")) for b in bins)
    check(binned == valued, f"the CLV bins hold {binned} of {valued}")
    # Each bin holds the values between its edges (as drawn, to the cent): the first also
    # those below, the last its end.
    for i, b in enumerate(bins):
        low, high = float(b.get_attribute("data-from")), float(b.get_attribute("data-to"))
        lower = "" if i == 0 else f"predicted_clv_12m >= {low} - 0.005 AND"
        upper = f"predicted_clv_12m <= {high} + 0.005" if i == len(bins) - 1 else f"predicted_clv_12m < {high} + 0.005"
        (most,) = rows("customer_predictions", as_of, f"SELECT COUNT(*) FROM t WHERE {lower} {upper}")[0]
        lower = "" if i == 0 else f"predicted_clv_12m >= {low} + 0.005 AND"
        upper = f"predicted_clv_12m < {high} - 0.005"
        (least,) = rows("customer_predictions", as_of, f"SELECT COUNT(*) FROM t WHERE {lower} {upper}")[0]
        n = int(b.get_attribute("data-customers"))
        check(least <= n <= most, f"bin {i} [{low}, {high}) holds {n}, DuckDB {least}..{most}")
    check(sum(1 for b in bins if int(b.get_attribute("data-customers")) > 0) >= 5, "a spread")

    # Run health: the runs `segflow runs` lists, newest first, with their status.
    lines = driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
    check(len(lines) == min(len(runs), 10), f"{len(lines)} runs shown of {len(runs)}")
    for line, run in zip(lines, runs):
        check(line.get_attribute("data-run") == run["run_id"], "run order")
        check(line.get_attribute("data-status") == run["status"], f"run {run['run_id']} status")
        check(line.get_attribute("data-as-of") == run["as_of"], "run as_of")
    check(
        text(driver.find_element(By.CSS_SELECTOR, "#tile-last-run .value")).endswith(runs[0]["status"]),
        "last run tile",
    )

    # Lineage: each output node with the rows its run published.
    shown_run = next(r for r in runs if r["status"] == "succeeded" and r["as_of"] == as_of)
    outputs = driver.find_elements(By.CSS_SELECTOR, "svg.lineage g.node[data-kind='output']")
    check(len(outputs) == len(shown_run["rows"]), f"{len(outputs)} output nodes")
    for node in outputs:
        table_name = node.get_attribute("data-id").removeprefix("output_")
        check(
            int(node.get_attribute("data-rows")) == shown_run["rows"][table_name],
            f"lineage rows of {table_name}",
        )
    check(
        len(driver.find_elements(By.CSS_SELECTOR, "svg.lineage path.link")) > 60,
        "lineage links",
    )

    check(driver.execute_script("return document.documentElement.dataset.fits") == "true", "desktop fits")
    driver.save_screenshot(os.path.join(shots, "desktop.png"))
    # A phone-width screen: nothing wider than the window but what scrolls in its own box.
    driver.set_window_size(390, 844)
    driver.refresh()
    width = driver.execute_script("return window.innerWidth")
    check(width <= 400, f"window {width}px wide")
    check(
        driver.execute_script("return document.documentElement.dataset.fits") == "true",
        "the page scrolls sideways at phone width: "
        + str(driver.execute_script("return document.documentElement.scrollWidth")),
    )
    driver.save_screenshot(os.path.join(shots, "phone.png"))
finally:
    driver.quit()

for shot in ["desktop.png", "phone.png"]:
    with open(os.path.join(shots, shot), "rb") as f:
        check(f.read(8) == b"\x89PNG\r\n\x1a\n", f"{shot} is a PNG")
    check(os.path.getsize(os.path.join(shots, shot)) > 20_000, f"{shot} shows something")

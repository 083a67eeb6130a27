"""Checks a running daemon's /metrics (parsed with prometheus_client, as Prometheus would)
and its status page (in headless Chromium, driven by Selenium) against the run history.

usage: status.py BASE_URL RUNS_JSON DUE(HH:MM:SS UTC)

Prints nothing and exits 0 when every check holds; else raises with what differed.
"""

import json
import re
import sys
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families
from selenium.webdriver.common.by import By

from browser import chromium

base, runs_json, due = sys.argv[1:4]


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def instant(text):
    """An RFC 3339 time as the history writes it (up to nanoseconds), in Unix seconds."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(text).timestamp()


with open(runs_json) as f:
    runs = [json.loads(line) for line in f if line.strip()]
ended = [r for r in runs if r["status"] != "running"]
check(len(ended) == len(runs), "a run is still going")

with urllib.request.urlopen(base + "/metrics") as answer:
    check(answer.headers["Content-Type"].startswith("text/plain; version=0.0.4"), "content type")
    text = answer.read().decode()
samples = {}
kinds = {}
for family in text_string_to_metric_families(text):
    kinds[family.name] = family.type
    for sample in family.samples:
        samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value


def sample(name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


check(kinds.get("segflow_runs") == "counter", f"kinds {kinds}")
check(kinds.get("segflow_last_success_timestamp_seconds") == "gauge", "gauge")

# Runs by pipeline and status: exactly the history's (this daemon ran every one of them).
counted = Counter((r["pipeline"], r["status"]) for r in ended)
check(counted[("good", "succeeded")] >= 1 and counted[("bad", "failed")] >= 2, f"{counted}")
reported = {
    (dict(labels)["pipeline"], dict(labels)["status"]): value
    for (name, labels), value in samples.items()
    if name == "segflow_runs_total" and value > 0
}
check(reported == dict(counted), f"runs_total {reported} vs the history {dict(counted)}")
check(sample("segflow_runs_total", pipeline="good", status="failed") == 0, "zero counters exist")

for pipeline in ["good", "bad"]:
    mine = sorted((r for r in ended if r["pipeline"] == pipeline), key=lambda r: r["ended_at"])
    last = mine[-1]
    took = instant(last["ended_at"]) - instant(last["started_at"])
    shown = sample("segflow_last_run_duration_seconds", pipeline=pipeline)
    check(abs(shown - took) < 0.002, f"{pipeline} duration {shown} vs {took}")
    succeeded = [r for r in mine if r["status"] == "succeeded"]
    success = sample("segflow_last_success_timestamp_seconds", pipeline=pipeline)
    if succeeded:
        newest = succeeded[-1]
        check(abs(success - instant(newest["ended_at"])) < 0.002, f"{pipeline} last success")
        for table, rows in newest["rows"].items():
            check(
                sample("segflow_rows_published", pipeline=pipeline, table=table) == rows,
                f"{pipeline}.{table} rows",
            )
    else:
        check(success is None, f"{pipeline} never succeeded, yet has a last success")
    failed_checks = Counter(
        c["name"] for r in mine for c in r.get("checks", []) if c["status"] != "passed"
    )
    for name, n in failed_checks.items():
        check(
            sample("segflow_check_failures_total", pipeline=pipeline, check=name) == n,
            f"{pipeline} check {name}: {n}",
        )
check(
    sample("segflow_check_failures_total", pipeline="bad", check="enough") == 2,
    "both of bad's tries failed their check",
)
check(
    not any(name == "segflow_lease_takeovers_total" for name, _ in samples),
    "a lease was taken over",
)
check(sample("segflow_healthy") == 1, "healthy")
check(sample("segflow_pipelines_loaded") == 2, "two pipelines")
check(sample("segflow_pipelines_unloadable") == 1, "one file does not load")

# The status page, in a browser: each pipeline's last run, next slot, lease and report.
driver = chromium(1200, 800)
try:
    driver.get(base + "/")
    check(driver.find_element(By.ID, "health").get_attribute("data-healthy") == "true", "health")
    rows = driver.find_elements(By.CSS_SELECTOR, "#pipelines tbody tr")
    check(len(rows) == 2, f"{len(rows)} pipelines shown")
    now = datetime.now(timezone.utc)
    for row in rows:
        pipeline = row.get_attribute("data-pipeline")
        newest = max((r for r in ended if r["pipeline"] == pipeline), key=lambda r: r["started_at"])
        check(row.get_attribute("data-last-status") == newest["status"], f"{pipeline} status")
        check(newest["as_of"] in row.text, f"{pipeline} as_of")
        next_slot = row.get_attribute("data-next-slot")
        at = datetime.strptime(next_slot, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        check(
            next_slot.endswith(due) and now < at <= now + timedelta(days=1),
            f"{pipeline} next {next_slot}",
        )
        check("nobody" in row.text, f"{pipeline} lease: {row.text}")
    # The file that does not load, with its line and why.
    broken = driver.find_elements(By.CSS_SELECTOR, "#unloadable tbody tr")
    check(len(broken) == 1, f"{len(broken)} unloadable files shown")
    check(broken[0].get_attribute("data-file").endswith("broken.yaml"), "the broken file")
    check(re.search(r"broken\.yaml:4\b.*colour", broken[0].text, re.S), broken[0].text)
    # Recent runs, newest first: each one's status, duration, rows and first error line.
    shown = driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    newest_first = sorted(ended, key=lambda r: r["started_at"], reverse=True)[:20]
    check(
        [r.get_attribute("data-run-id") for r in shown] == [r["run_id"] for r in newest_first],
        "the recent runs are the history's, newest first",
    )
    for row, run in zip(shown, newest_first):
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        took = instant(run["ended_at"]) - instant(run["started_at"])
        error = (run.get("error") or "").splitlines()[:1]
        check(cells[0] == run["pipeline"] and cells[1] == run["as_of"], f"{cells}")
        check(cells[2] == run["status"] == row.get_attribute("data-status"), f"{cells}")
        check(abs(float(cells[4]) - took) <= 0.051, f"{cells} vs {took}")
        check(int(cells[5]) == sum(run["rows"].values()), f"{cells}")
        check(cells[6] == (error[0] if error else ""), f"{cells} vs {error}")
    bad_row = driver.find_element(By.CSS_SELECTOR, "#pipelines tr[data-pipeline='bad']")
    bad_error = newest_first[[r["pipeline"] for r in newest_first].index("bad")]["error"]
    check(bad_error.splitlines()[0] in bad_row.text, f"the last error: {bad_row.text}")
    # Nothing the page asked for failed (the icon, say).
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    check(not errors, f"the browser logged errors: {errors}")
    # On a phone-width screen nothing but the table's own box scrolls sideways.
    driver.set_window_size(390, 844)
    check(driver.execute_script("return window.innerWidth") <= 400, "a phone-width window")
    check(
        driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        ),
        "the status page scrolls sideways at phone width",
    )
    driver.set_window_size(1200, 800)
    link = driver.find_element(By.CSS_SELECTOR, "tr[data-pipeline='good'] a")
    link.click()
    check(driver.current_url == base + "/report/good", driver.current_url)
    statuses = [
        r.get_attribute("data-status")
        for r in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
    ]
    check(statuses == ["succeeded"], f"the report's runs: {statuses}")
finally:
    driver.quit()

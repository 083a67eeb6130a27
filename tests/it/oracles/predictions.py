"""Recomputes the published customer_predictions from the raw shop, by the README's rules
("Predictions") and the parameters the night published in model_fits, independently of
segflow's SQL and Rust: plain Python, with mpmath's hypergeometric function. Prints the
number of buyers checked, the prediction segments' sizes and the repeat buyers left out of
the spend fit; exits 1 listing every published value that differs.

With HOLDOUT_DAYS, it then counts the purchases each buyer made in the days after as_of
(the data must hold them) and compares them with expected_purchases_90d (HOLDOUT_DAYS 90)
and with a naive forecast, the buyer's past repeat rate x / T carried forward; by
calibration frequency x (0 to 6, and 7 or more), printed as JSON lines. It exits 1 unless
the model is closer than the naive forecast in total and in the sum of the groups' errors.

usage: predictions.py DATA OUT AS_OF [HOLDOUT_DAYS]

The shipped vars are assumed: UTC, weeks (model_period_days 7), a 1 % monthly discount,
a 365-day horizon for the next order, churn cut points 0.3 and 0.7.
"""
import bisect
import datetime as dt
import decimal
import json
import sys
from pathlib import Path

import mpmath as mp
import pyarrow.parquet as pq

mp.mp.dps = 20
data, out, as_of = Path(sys.argv[1]), Path(sys.argv[2]), dt.date.fromisoformat(sys.argv[3])
holdout = int(sys.argv[4]) if len(sys.argv) > 4 else None
as_of_end = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
PERIOD, DISCOUNT, HORIZON, HIGH, LOW = 7.0, 0.01, 365.0, 0.3, 0.7


def rows(folder):
    return pq.read_table(folder).to_pylist()


# Members: customers signed up before the end of as_of, or at an unknown time.
members = {c["customer_id"] for c in rows(data / "customers")
           if c["created_at"] is None or c["created_at"] < as_of_end}

# Purchases: paid orders not refunded in full, of members; one per calendar day (UTC), of
# the day's summed net amount. Those placed before the end of as_of are the history.
orders = rows(data / "orders")


def purchase_days(until):
    days = {}
    for o in orders:
        refunded = o["refunded_amount"] or decimal.Decimal(0)
        if (o["status"] != "paid" or (refunded > 0 and refunded >= o["total_amount"])
                or o["customer_id"] not in members or o["ordered_at"] >= until):
            continue
        day = o["ordered_at"].astimezone(dt.timezone.utc).date()
        per_day = days.setdefault(o["customer_id"], {})
        per_day[day] = per_day.get(day, decimal.Decimal(0)) + o["total_amount"] - refunded
    return days


days = purchase_days(as_of_end)

model_fits = rows(out / "model_fits" / f"as_of={as_of}")
fits = {f["model"]: dict(f["parameters"]) for f in model_fits}
r, alpha, a, b = (mp.mpf(fits["bgnbd"][k]) for k in ("r", "alpha", "a", "b"))
p, q, gamma = (mp.mpf(fits["gamma_gamma"][k]) for k in ("p", "q", "gamma"))


def expected(t, x, t_x, T):
    """E[Y(t) | x, t_x, T]: eq. 10 of Fader, Hardie & Lee (2005), as `lifetimes` writes it."""
    if t <= 0:
        return mp.mpf(0)
    hyp = mp.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    first = (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp) * (a + b + x - 1) / (a - 1)
    second = 1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 1
    return first / second


def p_alive(x, t_x, T):
    if x == 0:
        return mp.mpf(1)
    return 1 / (1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x))


published = {row["customer_id"]: row
             for row in rows(out / "customer_predictions" / f"as_of={as_of}")}
problems = []


def differs(got, want):
    if got is None or want is None:
        return got is not want
    return abs(got - float(want)) > 1e-9 * max(1.0, abs(float(want)))


for customer, per_day in sorted(days.items()):
    row = published.get(customer)
    if row is None:
        problems.append(f"customer {customer}: bought, but has no prediction")
        continue
    first, last = min(per_day), max(per_day)
    x = len(per_day) - 1
    t_x = mp.mpf((last - first).days) / PERIOD
    T = mp.mpf((as_of - first).days) / PERIOD
    repeat = [amount for day, amount in per_day.items() if day > first]
    mean = mp.mpf(str(sum(repeat) / len(repeat))) if repeat else mp.mpf(0)
    alive = p_alive(x, t_x, T)
    value = p * (gamma + x * mean) / (p * x + q - 1)
    month = mp.mpf("30.4375") / PERIOD
    clv = sum(value * (expected(m * month, x, t_x, T) - expected((m - 1) * month, x, t_x, T))
              / (1 + mp.mpf(DISCOUNT)) ** m for m in range(1, 13))
    want = {
        "x": x, "t_x": t_x, "T": T, "p_alive": alive,
        "expected_purchases_90d": expected(90 / PERIOD, x, t_x, T),
        "expected_purchases_365d": expected(365 / PERIOD, x, t_x, T),
        "expected_average_order_value": value, "predicted_clv_12m": clv,
    }
    for column, value in want.items():
        if differs(row[column], value):
            problems.append(f"customer {customer}: {column} is {row[column]}, the rules give {value}")
    risk = None if x == 0 else "high" if alive < HIGH else "medium" if alive < LOW else "low"
    if row["churn_risk"] != risk:
        problems.append(f"customer {customer}: churn_risk is {row['churn_risk']}, not {risk}")
    # The next order: the first day by whose end one more purchase is expected.
    by_day = lambda d: expected(mp.mpf(d) / PERIOD, x, t_x, T)
    date = row["expected_next_order_date"]
    if date is None:
        if by_day(HORIZON) >= 1:
            problems.append(f"customer {customer}: one purchase is expected by {HORIZON} days")
    else:
        d = (date - as_of).days
        if not (by_day(d) >= 1 - 1e-6 and by_day(d - 1) < 1 + 1e-6):
            problems.append(f"customer {customer}: {date} is not the day E[purchases] reaches 1")

# The three segments of the predictions, by their rules (README, "Segments") over the rows
# just checked: likely_to_churn (repeat buyers with a purchase in the last 365 days and
# p_alive below 0.5), high_predicted_value (the top 10 % by predicted_clv_12m, ties all in
# or all out), expected_to_buy_soon (the next order within 30 days).
members_of = {}
for row in rows(out / "segment_membership" / f"as_of={as_of}"):
    members_of.setdefault(row["segment"], set()).add(row["customer_id"])
descending = sorted(-row["predicted_clv_12m"] for row in published.values())
at_or_above = lambda v: bisect.bisect_right(descending, -v) / len(descending)
want = {
    "likely_to_churn": {c for c, row in published.items() if row["x"] > 0
                        and row["p_alive"] < 0.5
                        and (as_of - max(days[c])).days < 365},
    "high_predicted_value": {c for c, row in published.items()
                             if at_or_above(row["predicted_clv_12m"]) <= 0.1},
    "expected_to_buy_soon": {c for c, row in published.items()
                             if row["expected_next_order_date"] is not None
                             and (row["expected_next_order_date"] - as_of).days <= 30},
}
for segment, expected_members in want.items():
    got = members_of.get(segment, set())
    if got != expected_members:
        problems.append(f"{segment}: {len(got)} members, the rule gives {len(expected_members)}: "
                        f"{sorted(got ^ expected_members)[:10]} differ")

# Gamma-Gamma is fitted on the repeat buyers whose repeat purchases average above zero; the
# others (free orders) are left out, and the shipped check spend_fit_left_out counts them.
# (Pinned parameters have no customers.)
def repeat_mean(per_day):
    first = min(per_day)
    repeat = [amount for day, amount in per_day.items() if day > first]
    return sum(repeat) / len(repeat) if repeat else None


means = [repeat_mean(per_day) for per_day in days.values()]
left_out = sum(1 for m in means if m is not None and m <= 0)
spend_fit = next(f["customers"] for f in model_fits if f["model"] == "gamma_gamma")
if spend_fit is not None and spend_fit != sum(1 for m in means if m is not None and m > 0):
    problems.append(f"the spend fit used {spend_fit} customers, not the repeat buyers whose "
                    f"repeat purchases average above zero")

extra = set(published) - set(days)
if extra:
    problems.append(f"predictions for customers without a purchase: {sorted(extra)[:10]}")
if problems:
    print("\n".join(problems[:50]))
    sys.exit(1)
print(f"checked {len(days)} buyers")
print(", ".join(f"{segment} {len(members)}" for segment, members in want.items()))
print(f"left out of the spend fit: {left_out}")

if holdout:
    later = purchase_days(as_of_end + dt.timedelta(days=holdout))
    groups = {}
    for customer, per_day in days.items():
        row = published[customer]
        actual = len(later[customer]) - len(per_day)
        # A buyer first seen on the as_of day (T 0) has no rate yet.
        naive = row["x"] / row["T"] * holdout / PERIOD if row["T"] > 0 else 0.0
        group = groups.setdefault(min(row["x"], 7), {"customers": 0, "actual": 0, "model": 0.0, "naive": 0.0})
        group["customers"] += 1
        group["actual"] += actual
        group["model"] += row["expected_purchases_90d"]
        group["naive"] += naive
    for x, group in sorted(groups.items()):
        print(json.dumps({"x": f"{x}+" if x == 7 else str(x), **group}))
    total = {k: sum(g[k] for g in groups.values()) for k in ("actual", "model", "naive")}
    print(json.dumps({"x": "all", "customers": len(days), **total}))
    error = lambda key: sum(abs(g[key] - g["actual"]) for g in groups.values())
    if not (abs(total["model"] - total["actual"]) < abs(total["naive"] - total["actual"])
            and error("model") < error("naive")):
        print(f"the model is not closer than the naive forecast: {error('model')} vs {error('naive')}")
        sys.exit(1)

"""The generated shop's rows, for the scripts that land it as a connector or an export
would (airbyte_shop.py, fivetran_shop.py, shopify_csv_shop.py)."""
import glob, os
from collections import defaultdict
import pyarrow.parquet as pq


def read(data, table):
    """Every row of one of the shop's tables, file by file in name order, as dicts."""
    rows = []
    for path in sorted(glob.glob(os.path.join(data, table, "*.parquet"))):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def by_order(rows):
    """Rows grouped by their order_id: an order's versions, or its line items."""
    grouped = defaultdict(list)
    for row in rows:
        grouped[row["order_id"]].append(row)
    return grouped


def in_force(versions, end):
    """The version in force at `end`: the latest made before it; None for an order placed
    later."""
    before = [v for v in versions if v["updated_at"] < end]
    return max(before, key=lambda v: v["updated_at"]) if before else None

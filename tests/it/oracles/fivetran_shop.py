"""Lands a generated shop as Fivetran's Shopify connector lands it in a data lake, for
layouts.rs: one Delta Lake table per connector table (GraphQL-era columns, as
fivetran/dbt_shopify's staging macros list them; money as DECIMAL(38,10), times as UTC
instants), written by the `deltalake` package.

Usage: fivetran_shop.py GENERIC_DATA OUT_DIR AS_OF

Each table has two versions, as syncs update rows in place: version 0, committed before the
end of the night AS_OF, holds the shop as it stood then (orders refunded later still paid,
nothing placed later); version 1, committed after it, holds everything the generic shop
has. What the landing adds to version 0, none of which may count: a test order, a deleted
order and a deleted customer (`_fivetran_deleted`), guest orders and guest checkouts (no
customer_id), pending and authorized orders, a second address in another country, and
products in two collections. Refunds are split over two REFUND rows for some orders.
Prints, as JSON, the guest orders and checkouts of version 0."""
import datetime as dt, json, os, sys
from collections import defaultdict
from decimal import Decimal
import pyarrow as pa
from deltalake import write_deltalake
import generic_shop

generic, out, as_of = sys.argv[1:4]
UTC = dt.timezone.utc
NIGHT_END = dt.datetime.fromisoformat(as_of).replace(tzinfo=UTC) + dt.timedelta(days=1)
MONEY = pa.decimal128(38, 10)
TIME = pa.timestamp("us", tz="UTC")
META = [("_fivetran_synced", TIME)]


def read(table):
    return generic_shop.read(generic, table)


def final(versions):
    return max(versions, key=lambda v: v["updated_at"])


customers = {row["customer_id"]: row for row in read("customers")}
items = generic_shop.by_order(read("order_items"))
versions = generic_shop.by_order(read("orders"))
checkouts = read("checkouts")
products = sorted({(i["product_id"], i["collection"]) for rows in items.values() for i in rows})
collections = sorted({c for _, c in products} | {"sale"})
collection_id = {name: 9000 + n for n, name in enumerate(collections)}

SCHEMAS = {
    "order": [("id", pa.int64()), ("customer_id", pa.int64()), ("email", pa.string()),
              ("name", pa.string()), ("created_at", TIME), ("updated_at", TIME),
              ("processed_at", TIME), ("cancelled_at", TIME),
              ("display_financial_status", pa.string()), ("currency_code", pa.string()),
              ("presentment_currency_code", pa.string()),
              ("total_price_set_shop_amount", MONEY),
              ("total_price_set_shop_currency_code", pa.string()),
              ("total_price_set_pres_amount", MONEY),
              ("total_price_set_pres_currency_code", pa.string()), ("test", pa.bool_()),
              ("source_name", pa.string()), ("_fivetran_deleted", pa.bool_())],
    "order_line": [("id", pa.int64()), ("order_id", pa.int64()), ("product_id", pa.int64()),
                   ("variant_id", pa.int64()), ("quantity", pa.int64()), ("sku", pa.string()),
                   ("original_total_set_shop_amount", MONEY),
                   ("original_total_set_pres_amount", MONEY)],
    "refund": [("id", pa.int64()), ("order_id", pa.int64()), ("created_at", TIME),
               ("total_refunded_set_shop_amount", MONEY),
               ("total_refunded_set_pres_amount", MONEY)],
    "customer": [("id", pa.int64()), ("email", pa.string()), ("phone", pa.string()),
                 ("created_at", TIME), ("updated_at", TIME),
                 ("email_marketing_consent_state", pa.string()),
                 ("_fivetran_deleted", pa.bool_())],
    "customer_address": [("id", pa.int64()), ("customer_id", pa.int64()),
                         ("country_code", pa.string()), ("is_default", pa.bool_())],
    "customer_tag": [("customer_id", pa.int64()), ("index", pa.int64()), ("value", pa.string())],
    "abandoned_checkout": [("id", pa.int64()), ("customer_id", pa.int64()),
                           ("created_at", TIME), ("completed_at", TIME),
                           ("_fivetran_deleted", pa.bool_())],
    "collection_product": [("collection_id", pa.int64()), ("product_id", pa.int64())],
    "collection": [("id", pa.int64()), ("handle", pa.string()), ("title", pa.string()),
                   ("_fivetran_deleted", pa.bool_())],
}


def shop(orders, customer_rows, checkout_rows, synced):
    """Every table's rows for one version of the lake."""
    tables = defaultdict(list)
    for order in orders:
        status, refunded = order["status"], order["refunded_amount"]
        financial = order.get("financial") or {
            "cancelled": "VOIDED", "refunded": "REFUNDED"}.get(status) or (
            "PARTIALLY_REFUNDED" if refunded > 0 else "PAID")
        total = order["total_amount"]
        tables["order"].append({
            "id": order["order_id"], "customer_id": order["customer_id"],
            "name": f"#{1000 + order['order_id']}", "created_at": order["ordered_at"],
            "updated_at": order["updated_at"], "processed_at": order["ordered_at"],
            "cancelled_at": order["updated_at"] if status == "cancelled" else None,
            "display_financial_status": financial, "currency_code": "USD",
            "presentment_currency_code": "EUR", "total_price_set_shop_amount": total,
            "total_price_set_shop_currency_code": "USD",
            "total_price_set_pres_amount": total * Decimal("0.92"),
            "total_price_set_pres_currency_code": "EUR", "test": order.get("test", False),
            "source_name": order["channel"], "_fivetran_deleted": order.get("deleted", False)})
        for n, item in enumerate(items[order["order_id"]]):
            line_total = item["unit_price"] * item["quantity"]
            tables["order_line"].append({
                "id": order["order_id"] * 10 + n, "order_id": order["order_id"],
                "product_id": item["product_id"], "variant_id": item["product_id"] * 100,
                "quantity": item["quantity"], "sku": f"SKU-{item['product_id']}",
                "original_total_set_shop_amount": line_total,
                "original_total_set_pres_amount": line_total * Decimal("0.92")})
        if refunded > 0:
            # Two refunds for every other order: what they took back adds up.
            parts = [refunded] if order["order_id"] % 2 else [
                (refunded / 3).quantize(Decimal("0.01")),
                refunded - (refunded / 3).quantize(Decimal("0.01"))]
            for n, part in enumerate(parts):
                tables["refund"].append({
                    "id": order["order_id"] * 10 + n, "order_id": order["order_id"],
                    "created_at": order["updated_at"], "total_refunded_set_shop_amount": part,
                    "total_refunded_set_pres_amount": part * Decimal("0.92")})
    for row in customer_rows:
        tables["customer"].append({
            "id": row["customer_id"], "email": row["email"], "phone": row["phone"],
            "created_at": row["created_at"], "updated_at": row["updated_at"],
            "email_marketing_consent_state":
                "SUBSCRIBED" if row["email_subscribed"] else "NOT_SUBSCRIBED",
            "_fivetran_deleted": row.get("deleted", False)})
        tables["customer_address"].append({
            "id": row["customer_id"] * 10, "customer_id": row["customer_id"],
            "country_code": row["country"], "is_default": True})
        if row["customer_id"] % 5 == 0:
            tables["customer_address"].append({
                "id": row["customer_id"] * 10 + 1, "customer_id": row["customer_id"],
                "country_code": "ZZ", "is_default": False})
        for index, tag in enumerate(row["tags"]):
            tables["customer_tag"].append(
                {"customer_id": row["customer_id"], "index": index, "value": tag})
    for row in checkout_rows:
        tables["abandoned_checkout"].append({
            "id": row["checkout_id"], "customer_id": row["customer_id"],
            "created_at": row["created_at"], "completed_at": row["completed_at"],
            "_fivetran_deleted": False})
    for product, name in products:
        tables["collection_product"].append(
            {"collection_id": collection_id[name], "product_id": product})
        if product % 2 == 0:
            tables["collection_product"].append(
                {"collection_id": collection_id["sale"], "product_id": product})
    for name in collections:
        tables["collection"].append({"id": collection_id[name], "handle": name,
                                     "title": name.title(), "_fivetran_deleted": False})
    for rows in tables.values():
        for row in rows:
            row["_fivetran_synced"] = synced
    return tables


# Version 0: the shop at the night's end, and what the landing adds.
night_orders = [o for o in (generic_shop.in_force(v, NIGHT_END) for v in versions.values()) if o]
night_customers = [c for c in customers.values() if c["created_at"] < NIGHT_END]
night_checkouts = [c for c in checkouts if c["created_at"] < NIGHT_END]
next_id = max(versions) + 1
guests = 0
for n, customer_id in enumerate(sorted(customers)[:25]):
    placed = NIGHT_END - dt.timedelta(days=2 + n)
    kind = ["test", "deleted", "guest", "pending", "authorized"][n % 5]
    night_orders.append({
        "order_id": next_id, "customer_id": None if kind == "guest" else customer_id,
        "ordered_at": placed, "updated_at": placed, "total_amount": Decimal("3000.00"),
        "refunded_amount": Decimal("0"), "status": "paid", "channel": "web",
        "test": kind == "test", "deleted": kind == "deleted",
        "financial": {"pending": "PENDING", "authorized": "AUTHORIZED"}.get(kind)})
    items[next_id] = [{"product_id": 2, "collection": "x", "quantity": 1,
                       "unit_price": Decimal("3000.00")}]
    guests += kind == "guest"
    next_id += 1
deleted_customer = dict(night_customers[0], customer_id=max(customers) + 1,
                        email="gone@example.com", deleted=True)
guest_checkouts = 6
night_checkouts += [{"checkout_id": 10_000_000 + n, "customer_id": None,
                     "created_at": NIGHT_END - dt.timedelta(days=1 + n), "completed_at": None}
                    for n in range(guest_checkouts)]
night = shop(night_orders, night_customers + [deleted_customer], night_checkouts,
             NIGHT_END - dt.timedelta(hours=3))
# Version 1: everything, synced the next morning.
later = shop([final(v) for v in versions.values()], list(customers.values()), checkouts,
             NIGHT_END + dt.timedelta(hours=9))

for table, columns in SCHEMAS.items():
    schema = pa.schema(META + columns)
    folder = os.path.join(out, table)
    for version, tables in enumerate([night, later]):
        write_deltalake(folder, pa.Table.from_pylist(tables[table], schema=schema),
                        mode="overwrite")
    for version, at in [(0, NIGHT_END - dt.timedelta(hours=2)),
                        (1, NIGHT_END + dt.timedelta(hours=10))]:
        entry = os.path.join(folder, "_delta_log", f"{version:020}.json")
        os.utime(entry, (at.timestamp(), at.timestamp()))

print(json.dumps({"guest_orders": guests, "guest_checkouts": guest_checkouts}))
sys.stdout.flush()
os._exit(0)  # deltalake's runtime threads may abort the interpreter's own exit

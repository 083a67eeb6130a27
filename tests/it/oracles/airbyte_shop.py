"""Lands a generated shop as Airbyte's Shopify source and S3 destination land it, for
layouts.rs: the streams `customers`, `orders`, `abandoned_checkouts` and
`collection_products`, typed by the connector's own JSON schemas (read from the
`airbyte-source-shopify` wheel that .ci/run downloads, never copied here: it is under the
Elastic License 2.0) the way the S3 destination types them, in several syncs, named as the
destination names its files.

Usage: airbyte_shop.py GENERIC_DATA SCHEMAS_DIR OUT_DIR parquet|jsonl AS_OF

What the landing adds to the generic shop, each a trap the layout's mapping must handle:
- an order changed after it was placed (refunded, cancelled) is landed again, whole, in the
  sync after its change; rows delivered twice land again in a later sync (at-least-once);
- refunds nested in `refunds[].refund_line_items` (subtotal and tax, shop money as strings)
  and `order_adjustments` (a shipping refund, negative), with presentment money in EUR;
- `customer_id` at the top is empty (the connector's default): the customer is `customer.id`;
- money as floats; `partially_refunded`, `refunded` and `voided` financial statuses;
- orders the generic shop does not have, none of which may count: test orders, pending and
  authorized payments, guest orders (no customer), and orders deleted later (a deletion stub
  with `deleted_at` and no `updated_at`) and guest checkouts;
- products in several collections (`collection_products`), and a customer's version landed
  after the night that must not count yet.
Prints, as JSON, what it added, for the test to compare with the run record."""
import datetime as dt, json, os, sys, uuid
from collections import defaultdict
from decimal import Decimal
import pyarrow as pa, pyarrow.parquet as pq
import generic_shop

generic, schemas, out, fmt, as_of = sys.argv[1:6]
UTC = dt.timezone.utc
# The shop's own zone: JSON lines carry Shopify's local offsets, Parquet UTC instants.
SHOP_OFFSET = dt.timezone(dt.timedelta(hours=-5))
NIGHT_END = dt.datetime.fromisoformat(as_of).replace(tzinfo=UTC) + dt.timedelta(days=1)
SHOP_URL = "segflow-test.myshopify.com"


def arrow_type(schema):
    """The S3 destination's Parquet type for a JSON schema: declared objects as structs,
    schemaless objects and arrays (and unions) as JSON strings, date-times as UTC micros."""
    types = schema.get("type", "string")
    types = [t for t in (types if isinstance(types, list) else [types]) if t != "null"]
    if len(types) != 1:
        return pa.string()
    kind = types[0]
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "string":
        if schema.get("format") == "date-time":
            return pa.timestamp("us", tz="UTC")
        return pa.string()
    if kind == "object":
        props = schema.get("properties")
        if not props:
            return pa.string()
        return pa.struct([pa.field(k, arrow_type(v)) for k, v in props.items()])
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict):
            return pa.string()
        return pa.list_(arrow_type(items))
    return pa.string()


META = [
    pa.field("_airbyte_raw_id", pa.string(), nullable=False),
    pa.field("_airbyte_extracted_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("_airbyte_generation_id", pa.int64()),
    pa.field("_airbyte_meta", pa.struct([
        pa.field("changes", pa.list_(pa.struct([
            pa.field("field", pa.string()), pa.field("change", pa.string()),
            pa.field("reason", pa.string())]))),
        pa.field("sync_id", pa.int64())])),
]


def stream_schema(stream):
    with open(os.path.join(schemas, f"{stream}.json")) as f:
        props = json.load(f)["properties"]
    return pa.schema(META + [pa.field(k, arrow_type(v)) for k, v in props.items()])


def check_fields(record, schema, path):
    """Every field this script sets is one the connector declares: a typo here would make
    a column the landing never has."""
    for key, value in record.items():
        index = schema.get_field_index(key)
        assert index >= 0, f"{path}.{key} is not in the connector's schema"
        field_type = schema.field(index).type
        if isinstance(value, dict):
            check_fields(value, field_type, f"{path}.{key}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                check_fields(item, field_type.value_type, f"{path}.{key}[]")


def read(table):
    return generic_shop.read(generic, table)


def money(value):
    return float(value)  # the connector's float(Decimal(text))


def money_set(amount, as_text=False):
    shop = Decimal(amount)
    presentment = (shop * Decimal("0.92")).quantize(Decimal("0.01"))
    value = (lambda d: str(d)) if as_text else (lambda d: float(d))
    return {"shop_money": {"amount": value(shop), "currency_code": "USD"},
            "presentment_money": {"amount": value(presentment), "currency_code": "EUR"}}


def sync_of(when):
    """The sync that lands a version: the first night after it (01:00 UTC next day) in the
    days around the night, so that versions of one order land in separate files as the
    connector lands them; the rest in quarterly syncs, to keep the files few (each file of
    this wide schema costs a query's planning)."""
    when = when.astimezone(UTC)
    if abs(when - NIGHT_END) > dt.timedelta(days=4):
        quarter = dt.datetime(when.year, (when.month - 1) // 3 * 3 + 1, 1, 1, tzinfo=UTC)
        later = quarter + dt.timedelta(days=95)
        return later.replace(day=1)
    day = (when + dt.timedelta(days=1)).date()
    return dt.datetime(day.year, day.month, day.day, 1, tzinfo=UTC)


def order_record(row, items, customers):
    total = row["total_amount"]
    refunded = row["refunded_amount"]
    customer_id = row["customer_id"]
    status = row["status"]
    cancelled = status == "cancelled"
    if cancelled:
        financial = "voided"
    elif status == "refunded":
        financial = "refunded"
    elif refunded > 0:
        financial = "partially_refunded"
    else:
        financial = "paid"
    line_items = [{
        "id": row["order_id"] * 10 + n,
        "product_id": item["product_id"],
        "variant_id": item["product_id"] * 100 + 1,
        "quantity": item["quantity"],
        "price": money(item["unit_price"]),
        "price_set": money_set(item["unit_price"]),
        "sku": f"SKU-{item['product_id']}",
        "title": f"Product {item['product_id']}",
        "name": f"Product {item['product_id']}",
        "gift_card": False,
    } for n, item in enumerate(items)]
    refunds = []
    if refunded > 0:
        # Shipping refunded as an order adjustment (negative, shop money as text), the rest
        # as the first line's subtotal and tax: the three add up to the refund.
        shipping = min(Decimal("4.95"), refunded)
        tax = ((refunded - shipping) * Decimal("0.2")).quantize(Decimal("0.01"))
        subtotal = refunded - shipping - tax
        refunds.append({
            "id": row["order_id"] * 7,
            "order_id": row["order_id"],
            "created_at": row["updated_at"],
            "refund_line_items": [{
                "id": row["order_id"] * 11,
                "line_item_id": line_items[0]["id"],
                "quantity": 1,
                "subtotal": money(subtotal),
                "subtotal_set": money_set(subtotal, as_text=True),
                "total_tax": money(tax),
                "total_tax_set": money_set(tax, as_text=True),
            }],
            "order_adjustments": [{
                "id": row["order_id"] * 13,
                "order_id": row["order_id"],
                "kind": "shipping_refund",
                "amount": str(-shipping),
                "amount_set": money_set(-shipping, as_text=True),
                "tax_amount": "0.00",
                "tax_amount_set": money_set(Decimal("0.00"), as_text=True),
            }],
        })
    customer = customers.get(customer_id)
    return {
        "id": row["order_id"],
        "name": f"#{1000 + row['order_id']}",
        "order_number": 1000 + row["order_id"],
        "email": customer["email"] if customer else None,
        "created_at": row["ordered_at"],
        "processed_at": row["ordered_at"],
        "updated_at": row["updated_at"],
        "cancelled_at": row["updated_at"] if cancelled else None,
        "financial_status": financial,
        "test": False,
        "currency": "USD",
        "presentment_currency": "EUR",
        "total_price": money(total),
        "total_price_set": money_set(total),
        "current_total_price": money(total - refunded),
        "source_name": row["channel"],
        "customer": {"id": customer_id, "email": customer["email"]} if customer else None,
        "customer_id": None,
        "line_items": line_items,
        "refunds": refunds,
        "shop_url": SHOP_URL,
    }


def customer_record(row, updated_at=None, subscribed=None):
    subscribed = row["email_subscribed"] if subscribed is None else subscribed
    return {
        "id": row["customer_id"],
        "email": row["email"],
        "phone": row["phone"],
        "created_at": row["created_at"],
        "updated_at": updated_at or row["updated_at"],
        "state": "enabled",
        "accepts_marketing": subscribed,
        "email_marketing_consent": {
            "state": "subscribed" if subscribed else "not_subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": row["created_at"],
        },
        "sms_marketing_consent": {
            "state": "subscribed" if row["sms_subscribed"] else "not_subscribed",
            "opt_in_level": "single_opt_in",
        },
        "default_address": {"country_code": row["country"], "default": True},
        "tags": ", ".join(row["tags"]),
        "currency": "USD",
        "shop_url": SHOP_URL,
    }


def checkout_record(row, customer):
    return {
        "id": row["checkout_id"],
        "token": uuid.UUID(int=row["checkout_id"]).hex,
        "email": customer["email"] if customer else None,
        "created_at": row["created_at"],
        "updated_at": row["completed_at"] or row["created_at"],
        "completed_at": row["completed_at"],
        "currency": "USD",
        "customer": {"id": customer["customer_id"], "email": customer["email"]}
        if customer else None,
        "shop_url": SHOP_URL,
    }


def land(stream, versions):
    """Writes (sync time, record) pairs as the S3 destination does: one file per sync,
    `<stream>/<YYYY>_<MM>_<DD>_<epoch ms>_0.<ext>`, with the destination's columns."""
    schema = stream_schema(stream)
    by_sync = defaultdict(list)
    for synced, record in versions:
        check_fields(record, schema, stream)
        by_sync[synced].append(record)
    folder = os.path.join(out, stream)
    os.makedirs(folder, exist_ok=True)
    for n, (synced, records) in enumerate(sorted(by_sync.items())):
        rows = [dict(record,
                     _airbyte_raw_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{stream}{n}{i}")),
                     _airbyte_extracted_at=synced,
                     _airbyte_generation_id=0,
                     _airbyte_meta={"changes": [], "sync_id": n + 1})
                for i, record in enumerate(records)]
        epoch = int(synced.timestamp() * 1000)
        name = f"{synced:%Y_%m_%d}_{epoch}_0"
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                           os.path.join(folder, f"{name}.parquet"))
        else:
            with open(os.path.join(folder, f"{name}.jsonl"), "w") as f:
                for row in rows:
                    f.write(json.dumps(as_json(row, epoch)) + "\n")


def as_json(value, epoch):
    """A record as the destination writes JSON lines with root-level flattening: times in
    the shop's offset as Shopify gives them, the extraction time in epoch ms."""
    if isinstance(value, dict):
        return {k: (epoch if k == "_airbyte_extracted_at" else as_json(v, epoch))
                for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v, epoch) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(SHOP_OFFSET).isoformat()
    return value


customers = {row["customer_id"]: row for row in read("customers")}
items = generic_shop.by_order(read("order_items"))
orders = read("orders")
# Versions land in the sync after they were made; a row delivered twice lands again in the
# sync after that (the generic shop's duplicates are its repeated rows).
seen = set()
order_versions = []
for row in orders:
    key = (row["order_id"], row["updated_at"])
    synced = sync_of(row["updated_at"])
    if key in seen:
        synced += dt.timedelta(days=1)
    seen.add(key)
    order_versions.append((synced, order_record(row, items[row["order_id"]], customers)))

# Orders the generic shop does not have: none may count for anyone.
added = {"test": 0, "pending": 0, "guest": 0, "deleted": 0}
next_id = max(row["order_id"] for row in orders) + 1
buyers = sorted(customers)[:40]
for n, customer_id in enumerate(buyers):
    placed = NIGHT_END - dt.timedelta(days=3 + n)
    template = {"order_id": next_id, "customer_id": customer_id, "ordered_at": placed,
                "updated_at": placed, "total_amount": Decimal("5000.00"),
                "refunded_amount": Decimal("0"), "status": "paid", "channel": "web"}
    line = [{"product_id": 1, "quantity": 1, "unit_price": Decimal("5000.00")}]
    record = order_record(template, line, customers)
    kind = ["test", "pending", "guest", "deleted"][n % 4]
    if kind == "test":
        record["test"] = True
    elif kind == "pending":
        record["financial_status"] = ["pending", "authorized"][n // 4 % 2]
    elif kind == "guest":
        record["customer"] = None
        record["email"] = f"guest{n}@example.com"
    order_versions.append((sync_of(placed), record))
    if kind == "deleted":
        deleted_at = placed + dt.timedelta(hours=6)
        stub = {"id": next_id, "deleted_at": deleted_at,
                "deleted_message": "An order was deleted.",
                "deleted_description": "An order was deleted.", "shop_url": SHOP_URL}
        order_versions.append((sync_of(deleted_at) + dt.timedelta(hours=1), stub))
    added[kind] += 1
    next_id += 1
land("orders", order_versions)

customer_versions = [(sync_of(row["updated_at"]), customer_record(row))
                     for row in customers.values()]
# A customer unsubscribes two days after the night: that night must not know it yet.
late = customers[buyers[0]]
late_time = NIGHT_END + dt.timedelta(days=2)
customer_versions.append((sync_of(late_time),
                          customer_record(late, updated_at=late_time,
                                          subscribed=not late["email_subscribed"])))
land("customers", customer_versions)

checkout_versions = [(sync_of(row["completed_at"] or row["created_at"]),
                      checkout_record(row, customers.get(row["customer_id"])))
                     for row in read("checkouts")]
next_checkout = max(row[1]["id"] for row in checkout_versions) + 1
guest_checkouts = 7
for n in range(guest_checkouts):
    created = NIGHT_END - dt.timedelta(days=1 + n)
    row = {"checkout_id": next_checkout + n, "created_at": created, "completed_at": None}
    record = checkout_record(row, None)
    record["email"] = f"guest-checkout{n}@example.com"
    checkout_versions.append((sync_of(created), record))
land("abandoned_checkouts", checkout_versions)

# Each product in its own collection, and every other product also in `sale`.
collections = sorted({item["collection"] for rows in items.values() for item in rows})
collection_ids = {name: 9000 + n for n, name in enumerate(collections + ["sale"])}
memberships = {}
for rows in items.values():
    for item in rows:
        memberships[(item["product_id"], item["collection"])] = True
        if item["product_id"] % 2 == 0:
            memberships[(item["product_id"], "sale")] = True
first_sync = min(synced for synced, _ in order_versions)
land("collection_products", [(first_sync, {
    "collection_id": collection_ids[name], "collection_handle": name,
    "product_id": product, "shop_url": SHOP_URL}) for product, name in sorted(memberships)])

print(json.dumps({"orders": added, "guest_checkouts": guest_checkouts,
                  "late_customer": late["customer_id"]}))

"""Exports a generated shop as Shopify admin's CSV exports, for layouts.rs: the orders
export (one row per line item, the order's own fields on its first row only, times with
the shop's offset, two files of periods that do not overlap), the customers export, and
the product_collections table the layout asks a team to keep.

Usage: shopify_csv_shop.py GENERIC_DATA OUT_DIR AS_OF

Each export is taken at the end of the night AS_OF: orders as they stood then (a refund
landed later is not in it), customers who had signed up by then. What the exports add,
none of which may count: orders placed after the night, guest orders (an email that is no
customer's), pending and authorized orders. Emails are written in other cases and customer
ids with Shopify's leading apostrophe. Prints, as JSON, the guest orders placed by the
night's end."""
import csv, datetime as dt, json, os, sys
from decimal import Decimal
import generic_shop

generic, out, as_of = sys.argv[1:4]
UTC = dt.timezone.utc
SHOP_OFFSET = dt.timezone(dt.timedelta(hours=-5))
NIGHT_END = dt.datetime.fromisoformat(as_of).replace(tzinfo=UTC) + dt.timedelta(days=1)

ORDER_COLUMNS = [
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at",
    "Accepts Marketing", "Currency", "Subtotal", "Shipping", "Taxes", "Total",
    "Discount Code", "Discount Amount", "Shipping Method", "Created at", "Lineitem quantity",
    "Lineitem name", "Lineitem price", "Lineitem compare at price", "Lineitem sku",
    "Lineitem requires shipping", "Lineitem taxable", "Lineitem fulfillment status",
    "Billing Name", "Notes", "Cancelled at", "Payment Method", "Refunded Amount", "Vendor",
    "Outstanding Balance", "Id", "Tags", "Risk Level", "Source", "Lineitem discount", "Phone",
]
CUSTOMER_COLUMNS = [
    "Customer ID", "First Name", "Last Name", "Email", "Accepts Email Marketing",
    "Default Address Company", "Default Address Address1", "Default Address City",
    "Default Address Province Code", "Default Address Country Code", "Default Address Zip",
    "Default Address Phone", "Phone", "Accepts SMS Marketing", "Total Spent", "Total Orders",
    "Note", "Tax Exempt", "Tags",
]


def read(table):
    return generic_shop.read(generic, table)


def shop_time(value):
    return value.astimezone(SHOP_OFFSET).strftime("%Y-%m-%d %H:%M:%S %z") if value else ""


def in_force(versions):
    """The version an export taken at the night's end shows: the one in force then, or (for
    an order placed later) its first."""
    return generic_shop.in_force(versions, NIGHT_END) or min(
        versions, key=lambda v: v["updated_at"])


customers = {row["customer_id"]: row for row in read("customers")
             if row["created_at"] < NIGHT_END}
items = generic_shop.by_order(read("order_items"))
versions = generic_shop.by_order(read("orders"))
orders = [in_force(rows) for rows in versions.values()]


def email_of(customer_id, n):
    email = customers[customer_id]["email"] if customer_id in customers else None
    return email.upper() if email and n % 3 == 0 else email


# Guests and unpaid orders, none of which may count.
next_id = max(row["order_id"] for row in orders) + 1
guests = 0
buyers = sorted(customers)[:30]
for n, customer_id in enumerate(buyers):
    placed = NIGHT_END - dt.timedelta(days=2 + n)
    kind = ["guest", "pending", "authorized"][n % 3]
    orders.append({"order_id": next_id, "customer_id": customer_id, "ordered_at": placed,
                   "updated_at": placed, "total_amount": Decimal("4000.00"),
                   "refunded_amount": Decimal("0"), "status": kind, "channel": "web",
                   "email": f"guest{n}@example.com" if kind == "guest" else None})
    items[next_id] = [{"product_id": 2, "collection": "x", "quantity": 1,
                       "unit_price": Decimal("4000.00")}]
    guests += kind == "guest"
    next_id += 1


def order_rows(order, n):
    status = order["status"]
    refunded = order["refunded_amount"]
    financial = {"cancelled": "voided", "refunded": "refunded", "pending": "pending",
                 "authorized": "authorized", "guest": "paid"}.get(status) or (
        "partially_refunded" if refunded > 0 else "paid")
    email = order.get("email") or email_of(order["customer_id"], n)
    rows = []
    for i, item in enumerate(items[order["order_id"]]):
        row = dict.fromkeys(ORDER_COLUMNS, "")
        row.update({
            "Name": f"#{1000 + order['order_id']}",
            "Lineitem quantity": item["quantity"],
            "Lineitem name": f"Product {item['product_id']}",
            "Lineitem price": item["unit_price"],
            "Lineitem sku": f"SKU-{item['product_id']}",
            "Lineitem requires shipping": "true",
            "Lineitem taxable": "true",
            "Lineitem fulfillment status": "fulfilled",
        })
        if i == 0:
            row.update({
                "Email": email,
                "Financial Status": financial,
                "Paid at": shop_time(order["ordered_at"]) if financial != "pending" else "",
                "Currency": "USD",
                "Subtotal": order["total_amount"],
                "Shipping": "0.00",
                "Taxes": "0.00",
                "Total": order["total_amount"],
                "Created at": shop_time(order["ordered_at"]),
                "Cancelled at": shop_time(order["updated_at"]) if status == "cancelled" else "",
                "Payment Method": "Shopify Payments",
                "Refunded Amount": refunded if refunded > 0 else "0.00",
                "Outstanding Balance": "0.00",
                "Id": order["order_id"],
                "Source": order["channel"],
                "Billing Name": "Jane, \"JD\" Doe",
                "Notes": "leave at the door\nring twice",
            })
        rows.append(row)
    return rows


def write(path, columns, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# Two exports of periods that do not overlap, split at the start of the night's year.
split = dt.datetime(NIGHT_END.year, 1, 1, tzinfo=UTC)
orders.sort(key=lambda o: o["order_id"])
for name, part in [("orders_export_1.csv", [o for o in orders if o["ordered_at"] < split]),
                   ("orders_export_2.csv", [o for o in orders if o["ordered_at"] >= split])]:
    rows = [row for n, order in enumerate(part) for row in order_rows(order, n)]
    write(os.path.join(out, "orders_export", name), ORDER_COLUMNS, rows)

customer_rows = []
for n, row in enumerate(sorted(customers.values(), key=lambda c: c["customer_id"])):
    record = dict.fromkeys(CUSTOMER_COLUMNS, "")
    record.update({
        "Customer ID": f"'{row['customer_id']}" if n % 2 else row["customer_id"],
        "Email": row["email"].title() if n % 4 == 1 else row["email"],
        "Phone": row["phone"] or "",
        "Accepts Email Marketing": "yes" if row["email_subscribed"] else "no",
        "Accepts SMS Marketing": "yes" if row["sms_subscribed"] else "no",
        "Default Address Country Code": row["country"],
        "Tags": ", ".join(row["tags"]),
        "Tax Exempt": "no",
    })
    customer_rows.append(record)
write(os.path.join(out, "customers_export", "customers_export.csv"), CUSTOMER_COLUMNS,
      customer_rows)

memberships = set()
for rows in items.values():
    for item in rows:
        if item["collection"] != "x":
            memberships.add((item["product_id"], item["collection"]))
            if item["product_id"] % 2 == 0:
                memberships.add((item["product_id"], "sale"))
write(os.path.join(out, "product_collections", "product_collections.csv"),
      ["sku", "product_id", "collection"],
      [{"sku": f"SKU-{p}", "product_id": p, "collection": c} for p, c in sorted(memberships)])

print(json.dumps({"guest_orders": guests}))

-- order_items: each line item of the orders export, with its product and collections from
-- product_collections (the export has neither a product id nor collections: a line is
-- matched by `Lineitem sku`). A product in several collections gives its line a row per
-- collection, so that bought_collection and bought_a_not_b find it under each; a SKU that
-- product_collections does not list has no product and no collection.
WITH lines AS (
    SELECT "Name" AS name,
           "Lineitem sku" AS sku,
           "Lineitem quantity" AS quantity,
           "Lineitem price" AS unit_price
    FROM shopify_orders
), ids AS (
    SELECT "Name" AS name, MAX("Id") AS order_id FROM shopify_orders GROUP BY "Name"
)
SELECT ids.order_id,
       p.product_id,
       p.collection,
       l.quantity,
       l.unit_price
FROM lines l
JOIN ids ON ids.name = l.name
LEFT JOIN product_collections p ON p.sku = l.sku

-- order_items: each line item of each order (the nested `line_items`), with the collections
-- its product is in. A product may be in several collections (`collection_products` lists
-- custom and smart collections alike): its line then has a row per collection, so that
-- bought_collection and bought_a_not_b find it under each; a product in none has one row
-- with no collection. The collection is its handle (`outerwear`), which the shipped vars
-- name. Prices are the shop's money, rounded to cents once.
WITH lines AS (
    SELECT id AS order_id, unnest(line_items) AS line
    FROM airbyte_orders
    WHERE NOT COALESCE(test, false)
)
SELECT l.order_id,
       l.line['product_id'] AS product_id,
       c.collection_handle AS collection,
       CAST(l.line['quantity'] AS INT) AS quantity,
       CAST(ROUND(l.line['price_set']['shop_money']['amount'], 2) AS DECIMAL(12, 2)) AS unit_price
FROM lines l
LEFT JOIN airbyte_collection_products c ON c.product_id = l.line['product_id']

-- order_items: each line of ORDER_LINE, with the collections its product is in
-- (COLLECTION_PRODUCT, named by COLLECTION's handle; deleted collections left out). A
-- product in several collections gives its line a row per collection, so that
-- bought_collection and bought_a_not_b find it under each; a product in none has one row
-- with no collection. unit_price is the line's original total in shop money over its
-- quantity (REST-era: `price`).
WITH collections AS (
    SELECT cp.product_id, c.handle
    FROM fivetran_collection_product cp
    JOIN fivetran_collection c ON c.id = cp.collection_id
    WHERE NOT COALESCE(c._fivetran_deleted, false)
)
SELECT l.order_id,
       l.product_id,
       c.handle AS collection,
       CAST(l.quantity AS INT) AS quantity,
       CAST(l.original_total_set_shop_amount / l.quantity AS DECIMAL(12, 2)) AS unit_price
FROM fivetran_order_line l
LEFT JOIN collections c ON c.product_id = l.product_id

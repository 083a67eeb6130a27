-- checkouts: Shopify's admin exports no abandoned checkouts, so this table is empty and
-- abandoned_checkout finds no one. Its columns take their types from the orders export
-- (timestamps in the pipeline's zone); land checkouts as a source of their own to fill it.
SELECT CAST(NULL AS BIGINT) AS checkout_id,
       CAST(NULL AS BIGINT) AS customer_id,
       "Created at" AS created_at,
       "Created at" AS completed_at
FROM shopify_orders
WHERE false

-- orders: Airbyte's `orders` stream as the segment library's orders table, one row per order
-- as it stood at the end of the night (the source's key and version pick that version; an
-- order whose version in force is a deletion stub is gone).
--
-- An incremental step over airbyte_orders: it reads only that source, file by file.
--
-- The rules, one per column:
-- - customer_id is the nested `customer.id`: the top-level `customer_id` is empty unless
--   the connector's "populate top-level customer fields" option is on. A guest order has no
--   customer: its customer_id is NULL, it counts for no one, and the run record counts it
--   (`unmatched`, under orders).
-- - total_amount is the shop's money (`total_price_set.shop_money`), not the buyer's
--   (`presentment_money`): every amount segflow publishes is in the shop's currency. The
--   connector lands money as floats; each is rounded to cents once, here.
-- - refunded_amount is what the nested refunds took back, in shop money: each refund line's
--   subtotal and tax, less the order adjustments (Shopify records a refunded shipping fee as
--   a negative adjustment), as fivetran/dbt_shopify computes an order's adjusted total. The
--   connector lands these amounts as text, exact to the cent.
-- - status: a cancelled order (cancelled_at set) is 'cancelled'. 'paid' and
--   'partially_refunded' orders are 'paid' (paid_orders subtracts the refunds); 'refunded'
--   is 'refunded'. Every other financial status ('pending', 'authorized', 'partially_paid',
--   'voided', 'expired') keeps its name: paid_orders counts none of them, since no money
--   has been taken for good.
-- - Test orders (`test`: placed with Shopify's bogus gateway) are left out.
WITH refunds AS (
    SELECT id, unnest(refunds) AS refund FROM airbyte_orders
), refund_lines AS (
    SELECT id, unnest(refund['refund_line_items']) AS line FROM refunds
), adjustments AS (
    SELECT id, unnest(refund['order_adjustments']) AS adjustment FROM refunds
), refunded AS (
    SELECT id, SUM(amount) AS refunded_amount
    FROM (
        SELECT id,
               CAST(line['subtotal_set']['shop_money']['amount'] AS DECIMAL(12, 2))
               + COALESCE(CAST(line['total_tax_set']['shop_money']['amount'] AS DECIMAL(12, 2)), 0)
                   AS amount
        FROM refund_lines
        UNION ALL
        SELECT id,
               -(CAST(adjustment['amount_set']['shop_money']['amount'] AS DECIMAL(12, 2))
                 + COALESCE(CAST(adjustment['tax_amount_set']['shop_money']['amount'] AS DECIMAL(12, 2)), 0))
        FROM adjustments
    )
    GROUP BY id
)
SELECT o.id AS order_id,
       o.customer['id'] AS customer_id,
       o.created_at AS ordered_at,
       CAST(ROUND(o.total_price_set['shop_money']['amount'], 2) AS DECIMAL(12, 2)) AS total_amount,
       o.total_price_set['shop_money']['currency_code'] AS currency,
       CASE WHEN o.cancelled_at IS NOT NULL THEN 'cancelled'
            WHEN o.financial_status IN ('paid', 'partially_refunded') THEN 'paid'
            ELSE o.financial_status END AS status,
       CAST(COALESCE(r.refunded_amount, 0) AS DECIMAL(12, 2)) AS refunded_amount,
       o.source_name AS channel,
       o.updated_at
FROM airbyte_orders o
LEFT JOIN refunded r ON r.id = o.id
WHERE NOT COALESCE(o.test, false)

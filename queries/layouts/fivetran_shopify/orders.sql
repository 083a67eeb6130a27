-- orders: Fivetran's ORDER table as the segment library's orders table, one row per order,
-- with what its refunds (REFUND) took back.
--
-- - Deleted orders (_fivetran_deleted) and test orders (`test`) are left out.
-- - customer_id: a guest order has none; it counts for no one, and the run record counts it
--   (`unmatched`, under orders).
-- - total_amount is the shop's money (`total_price_set_shop_amount`, not the buyer's
--   `..._pres_amount`), read as the exact decimal the lake keeps, in cents. REST-era:
--   `total_price` (already the shop's money) and `currency`.
-- - refunded_amount: the sum of the order's refunds' `total_refunded_set_shop_amount`, which
--   holds refunded lines, shipping and adjustments alike.
-- - status: cancelled_at set is 'cancelled'; 'PAID' and 'PARTIALLY_REFUNDED' are 'paid'
--   (paid_orders subtracts the refunds); every other status ('PENDING', 'AUTHORIZED',
--   'PARTIALLY_PAID', 'REFUNDED', 'VOIDED', 'EXPIRED') keeps its name in lower case, and
--   paid_orders counts none of them. REST-era: `financial_status`, in lower case already.
WITH refunded AS (
    SELECT order_id, SUM(total_refunded_set_shop_amount) AS refunded_amount
    FROM fivetran_refund
    GROUP BY order_id
)
SELECT o.id AS order_id,
       o.customer_id,
       o.created_at AS ordered_at,
       CAST(o.total_price_set_shop_amount AS DECIMAL(12, 2)) AS total_amount,
       o.currency_code AS currency,
       CASE WHEN o.cancelled_at IS NOT NULL THEN 'cancelled'
            WHEN UPPER(o.display_financial_status) IN ('PAID', 'PARTIALLY_REFUNDED') THEN 'paid'
            ELSE LOWER(o.display_financial_status) END AS status,
       CAST(COALESCE(r.refunded_amount, 0) AS DECIMAL(12, 2)) AS refunded_amount,
       o.source_name AS channel,
       o.updated_at
FROM fivetran_order o
LEFT JOIN refunded r ON r.order_id = o.id
WHERE NOT COALESCE(o._fivetran_deleted, false)
  AND NOT COALESCE(o.test, false)

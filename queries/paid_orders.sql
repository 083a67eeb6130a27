-- paid_orders: the orders that count, one row per order placed before the end of the $as_of
-- day in the pipeline's time zone. Every rule about what an order is lives here; features
-- and segments read this table, not orders.
--
-- It is an incremental step (incremental: { source: orders, time: ordered_at }): segflow
-- runs it on each file of orders alone, on the rows placed before the end of the as_of day,
-- and keeps each file's result for later nights. So it reads only orders and no $as_of.
--
-- A paid order has status 'paid' and was not refunded in full (a refunded_amount of at least
-- its total_amount). Cancelled and 'refunded' orders are not orders. refunded_amount NULL
-- means no refund. net_amount is total_amount less refunds; order_date is the day it was
-- placed in the pipeline's time zone (timestamps reach SQL in that zone, so CAST(... AS DATE)
-- gives that calendar day). currency is the order's; a NULL currency is the shop's
-- ($currency). Amounts stay in it: the check orders_currency fails a night with orders in
-- another, unless the pipeline converts them (docs/shipped-pipeline.md, "Currencies").
SELECT order_id,
       customer_id,
       ordered_at,
       CAST(ordered_at AS DATE) AS order_date,
       total_amount - COALESCE(refunded_amount, 0) AS net_amount,
       COALESCE(currency, $currency) AS currency
FROM orders
WHERE status = 'paid'
  AND NOT (COALESCE(refunded_amount, 0) > 0 AND COALESCE(refunded_amount, 0) >= total_amount)

-- paid_orders: the orders that count, one row per order placed before the end of the $as_of
-- day ($as_of_end, in the pipeline's time zone). Every rule about what an order is lives here;
-- features and segments read this table, not orders.
--
-- A paid order has status 'paid' and was not refunded in full (a refunded_amount of at least
-- its total_amount). Cancelled and 'refunded' orders are not orders. refunded_amount NULL
-- means no refund. net_amount is total_amount less refunds; order_date is the day it was
-- placed in the pipeline's time zone (timestamps reach SQL in that zone, so CAST(... AS DATE)
-- gives that calendar day), and days_ago counts days from it to as_of (0 on the as_of day).
SELECT order_id,
       customer_id,
       ordered_at,
       CAST(ordered_at AS DATE) AS order_date,
       CAST(CAST($as_of AS DATE) - CAST(ordered_at AS DATE) AS BIGINT) AS days_ago,
       total_amount - COALESCE(refunded_amount, 0) AS net_amount
FROM orders
WHERE status = 'paid'
  AND ordered_at < $as_of_end
  AND NOT (COALESCE(refunded_amount, 0) > 0 AND COALESCE(refunded_amount, 0) >= total_amount)

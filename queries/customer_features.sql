-- customer_features: one row per customer who had signed up by the end of the $as_of day,
-- with their buying history up to that moment (UTC). Later orders and sign-ups are ignored,
-- so re-running an as_of gives the same answer.
--
-- A paid order has status 'paid'. Fully refunded ('refunded') and cancelled orders do not
-- count as orders and add no revenue; partial refunds on paid orders are subtracted.
WITH paid AS (
    SELECT customer_id,
           ordered_at,
           total_amount - refunded_amount AS net_amount
    FROM orders
    WHERE status = 'paid'
      AND ordered_at < CAST($as_of AS TIMESTAMP) + INTERVAL '1 day'
),
per_customer AS (
    SELECT customer_id,
           MIN(ordered_at) AS first_order_at,
           MAX(ordered_at) AS last_order_at,
           COUNT(*) AS paid_orders,
           SUM(net_amount) AS net_revenue
    FROM paid
    GROUP BY customer_id
)
SELECT c.customer_id,
       c.email,
       c.phone,
       c.country,
       c.email_subscribed,
       c.sms_subscribed,
       c.created_at,
       p.first_order_at,
       p.last_order_at,
       COALESCE(p.paid_orders, 0) AS paid_orders,
       CAST(COALESCE(p.net_revenue, 0) AS DECIMAL(14, 2)) AS net_revenue,
       CAST(p.net_revenue / p.paid_orders AS DECIMAL(14, 2)) AS average_order_value,
       CAST(CAST($as_of AS DATE) - CAST(p.first_order_at AS DATE) AS BIGINT) AS days_since_first_order,
       CAST(CAST($as_of AS DATE) - CAST(p.last_order_at AS DATE) AS BIGINT) AS days_since_last_order
FROM customers c
LEFT JOIN per_customer p USING (customer_id)
WHERE c.created_at < CAST($as_of AS TIMESTAMP) + INTERVAL '1 day'

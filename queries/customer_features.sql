-- customer_features: one row per customer who had signed up by the end of the $as_of day
-- (or whose sign-up time is unknown), with their buying history up to that moment (see
-- customer_orders and paid_orders). Later orders and sign-ups are ignored, so re-running an
-- as_of gives the same answer. Days count in the pipeline's time zone; the as_of day itself
-- is day 0.
--
-- A blank email or phone (empty or only spaces) is published as NULL: it is no contact point.
-- Money is in the shop's currency, $currency, named in the column currency.
WITH per_customer AS (
    SELECT customer_id,
           first_order_at,
           last_order_at,
           CAST(CAST($as_of AS DATE) - DATE '1970-01-01' AS BIGINT) - first_order_day
               AS days_since_first_order,
           CAST(CAST($as_of AS DATE) - DATE '1970-01-01' AS BIGINT) - last_order_day
               AS days_since_last_order,
           paid_orders,
           net_revenue
    FROM customer_orders
)
SELECT c.customer_id,
       NULLIF(TRIM(c.email), '') AS email,
       NULLIF(TRIM(c.phone), '') AS phone,
       c.country,
       c.email_subscribed,
       c.sms_subscribed,
       c.created_at,
       p.first_order_at,
       p.last_order_at,
       COALESCE(p.paid_orders, 0) AS paid_orders,
       CAST(COALESCE(p.net_revenue, 0) AS DECIMAL(14, 2)) AS net_revenue,
       CAST(p.net_revenue / p.paid_orders AS DECIMAL(14, 2)) AS average_order_value,
       $currency AS currency,
       p.days_since_first_order,
       p.days_since_last_order
FROM customers c
LEFT JOIN per_customer p USING (customer_id)
WHERE c.created_at IS NULL OR c.created_at < $as_of_end

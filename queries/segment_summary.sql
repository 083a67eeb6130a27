-- segment_summary: the CRM "portrait" of every declared segment (segment_catalog), an empty
-- one included with 0 customers.
--   customers                      members
--   share_of_customers             members / all customers signed up by as_of
--   buyers                         members with a paid order
--   revenue                        members' net revenue after refunds
--   average_order_value            revenue / the members' paid orders
--   currency                       of revenue and average_order_value: the shop's, $currency
--   average_orders                 paid orders per buyer
--   repurchase_rate                buyers with two or more paid orders / buyers
--   median_days_since_last_order   over buyers
--   reachable_by_email / _by_sms   members who accept email (and have an address) / SMS
--                                  (and have a phone number)
WITH everyone AS (
    SELECT COUNT(*) AS customers FROM customer_features
),
-- Reachability is decided before the join, so that the join carries two booleans per member
-- rather than their email and phone.
reachable AS (
    SELECT customer_id, paid_orders, net_revenue, days_since_last_order,
           email_subscribed AND email IS NOT NULL AS by_email,
           sms_subscribed AND phone IS NOT NULL AS by_sms
    FROM customer_features
),
members AS (
    SELECT m.segment, f.customer_id, f.paid_orders, f.net_revenue, f.days_since_last_order,
           f.by_email, f.by_sms
    FROM segment_membership m
    JOIN reachable f USING (customer_id)
)
SELECT s.segment,
       COUNT(m.customer_id) AS customers,
       CAST(COUNT(m.customer_id) AS DOUBLE) / NULLIF(MAX(e.customers), 0) AS share_of_customers,
       COUNT(m.customer_id) FILTER (WHERE m.paid_orders > 0) AS buyers,
       CAST(COALESCE(SUM(m.net_revenue), 0) AS DECIMAL(16, 2)) AS revenue,
       CAST(SUM(m.net_revenue) / NULLIF(SUM(m.paid_orders), 0) AS DECIMAL(14, 2)) AS average_order_value,
       $currency AS currency,
       AVG(CAST(m.paid_orders AS DOUBLE)) FILTER (WHERE m.paid_orders > 0) AS average_orders,
       CAST(COUNT(m.customer_id) FILTER (WHERE m.paid_orders >= 2) AS DOUBLE)
           / NULLIF(COUNT(m.customer_id) FILTER (WHERE m.paid_orders > 0), 0) AS repurchase_rate,
       MEDIAN(m.days_since_last_order) AS median_days_since_last_order,
       COUNT(m.customer_id) FILTER (WHERE m.by_email) AS reachable_by_email,
       COUNT(m.customer_id) FILTER (WHERE m.by_sms) AS reachable_by_sms
FROM segment_catalog s
LEFT JOIN members m ON m.segment = s.segment
CROSS JOIN everyone e
GROUP BY s.segment
ORDER BY s.segment

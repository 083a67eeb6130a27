-- segment_summary: the CRM "portrait" of each segment with at least one member.
--   customers                      members
--   share_of_customers             members / all customers signed up by as_of
--   buyers                         members with a paid order
--   revenue                        members' net revenue after refunds
--   average_order_value            revenue / the members' paid orders
--   average_orders                 paid orders per buyer
--   repurchase_rate                buyers with two or more paid orders / buyers
--   median_days_since_last_order   over buyers
--   reachable_by_email / _by_sms   members who accept email (and have an address) / SMS
--                                  (and have a phone number)
WITH everyone AS (
    SELECT COUNT(*) AS customers FROM customer_features
)
SELECT m.segment,
       COUNT(*) AS customers,
       CAST(COUNT(*) AS DOUBLE) / MAX(e.customers) AS share_of_customers,
       COUNT(*) FILTER (WHERE f.paid_orders > 0) AS buyers,
       CAST(SUM(f.net_revenue) AS DECIMAL(16, 2)) AS revenue,
       CAST(SUM(f.net_revenue) / NULLIF(SUM(f.paid_orders), 0) AS DECIMAL(14, 2)) AS average_order_value,
       AVG(CAST(f.paid_orders AS DOUBLE)) FILTER (WHERE f.paid_orders > 0) AS average_orders,
       CAST(COUNT(*) FILTER (WHERE f.paid_orders >= 2) AS DOUBLE)
           / NULLIF(COUNT(*) FILTER (WHERE f.paid_orders > 0), 0) AS repurchase_rate,
       MEDIAN(f.days_since_last_order) AS median_days_since_last_order,
       COUNT(*) FILTER (WHERE f.email_subscribed AND f.email IS NOT NULL) AS reachable_by_email,
       COUNT(*) FILTER (WHERE f.sms_subscribed AND f.phone IS NOT NULL) AS reachable_by_sms
FROM segment_membership m
JOIN customer_features f USING (customer_id)
CROSS JOIN everyone e
GROUP BY m.segment
ORDER BY m.segment

-- high_value_recent: customers whose net spend on paid orders in the last
-- $high_value_days days (as_of included) is above $high_value_min_spend.
SELECT customer_id
FROM paid_orders
WHERE days_ago < $high_value_days
GROUP BY customer_id
HAVING SUM(net_amount) > $high_value_min_spend

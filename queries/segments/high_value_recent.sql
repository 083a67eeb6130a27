-- high_value_recent: customers whose net spend on paid orders in the last
-- $high_value_days days (as_of included) is above $high_value_min_spend.
SELECT customer_id
FROM orders
WHERE status = 'paid'
  AND CAST(CAST($as_of AS DATE) - CAST(ordered_at AS DATE) AS BIGINT) < $high_value_days
  AND ordered_at < CAST($as_of AS TIMESTAMP) + INTERVAL '1 day'
GROUP BY customer_id
HAVING SUM(total_amount - refunded_amount) > $high_value_min_spend

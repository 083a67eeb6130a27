-- ordered_in_range: customers with a paid order placed between the days $range_start and
-- $range_end, both included (UTC), and not after as_of.
SELECT DISTINCT customer_id
FROM orders
WHERE status = 'paid'
  AND ordered_at >= CAST($range_start AS TIMESTAMP)
  AND ordered_at < CAST($range_end AS TIMESTAMP) + INTERVAL '1 day'
  AND ordered_at < CAST($as_of AS TIMESTAMP) + INTERVAL '1 day'

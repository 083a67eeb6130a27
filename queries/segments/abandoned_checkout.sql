-- abandoned_checkout: customers who started a checkout in the last $abandoned_days days
-- (as_of included) that was never completed, and placed no paid order after starting it
-- (up to the end of as_of).
SELECT DISTINCT c.customer_id
FROM checkouts c
WHERE c.completed_at IS NULL
  AND CAST(CAST($as_of AS DATE) - CAST(c.created_at AS DATE) AS BIGINT) < $abandoned_days
  AND c.created_at < CAST($as_of AS TIMESTAMP) + INTERVAL '1 day'
  AND NOT EXISTS (
      SELECT 1 FROM orders o
      WHERE o.customer_id = c.customer_id
        AND o.status = 'paid'
        AND o.ordered_at > c.created_at
        AND o.ordered_at < CAST($as_of AS TIMESTAMP) + INTERVAL '1 day')

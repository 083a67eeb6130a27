-- abandoned_checkout: customers who started a checkout in the last $abandoned_days days
-- (as_of included) that was not completed by the end of as_of, and placed no paid order
-- after starting it (up to the end of as_of). A checkout completed later was still open on
-- as_of: what happened after $as_of_end is not known yet on that night.
SELECT DISTINCT c.customer_id
FROM checkouts c
WHERE c.created_at < $as_of_end
  AND CAST(CAST($as_of AS DATE) - CAST(c.created_at AS DATE) AS BIGINT) < $abandoned_days
  AND (c.completed_at IS NULL OR c.completed_at >= $as_of_end)
  AND NOT EXISTS (
      SELECT 1 FROM paid_orders o
      WHERE o.customer_id = c.customer_id
        AND o.ordered_at > c.created_at)

-- abandoned_checkout: customers who started a checkout in the last $abandoned_days days
-- (as_of included) that was not completed by the end of as_of, and placed no paid order
-- after starting it (up to the end of as_of). A checkout completed later was still open on
-- as_of: what happened after $as_of_end is not known yet on that night.
--
-- The first condition is a bound the day count below implies (a day more than the window,
-- whatever a daylight-saving switch does to a day's length): comparing an instant is cheap
-- and leaves few checkouts, and taking each one's local date is not (10.7M checkouts at 1M
-- customers: the date of every one took 0.84 s, of those within the bound 0.10 s).
SELECT DISTINCT c.customer_id
FROM checkouts c
WHERE c.created_at >= $as_of_end - CAST(CONCAT($abandoned_days + 1, ' days') AS INTERVAL)
  AND c.created_at < $as_of_end
  AND CAST(CAST($as_of AS DATE) - CAST(c.created_at AS DATE) AS BIGINT) < $abandoned_days
  AND (c.completed_at IS NULL OR c.completed_at >= $as_of_end)
  AND NOT EXISTS (
      SELECT 1 FROM paid_orders o
      WHERE o.customer_id = c.customer_id
        AND o.ordered_at > c.created_at)

-- customer_profile: one row per customer (signed up by as_of) with everything a BI tool or
-- a campaign tool joins to: customer_attributes (features, RFM values, scores and labels),
-- and the sorted list of the segments the customer is in (empty when none).
WITH memberships AS (
    -- Sorting each small list afterwards gives the same lists as
    -- array_agg(segment ORDER BY segment), which DataFusion 55 computes one group at a time:
    -- over 100x slower, and 8 GiB, for a million customers (BENCHMARKS.md).
    SELECT customer_id,
           array_sort(array_agg(segment)) AS segments,
           COUNT(*) AS segment_count
    FROM segment_membership
    GROUP BY customer_id
)
SELECT a.*,
       COALESCE(m.segment_count, 0) AS segment_count,
       m.segments
FROM customer_attributes a
LEFT JOIN memberships m ON m.customer_id = a.customer_id

-- winback_suppressed: who would have qualified for winback_list but was left out, and why
-- (left_out_because; see winback_candidates.sql).
SELECT CAST($as_of AS DATE) AS as_of,
       customer_id,
       left_out_because,
       last_order_at,
       paid_orders,
       net_revenue,
       rf_segment
FROM winback_candidates
WHERE left_out_because IS NOT NULL

-- rfm (method: thresholds): the same scores as rfm.sql, 1 to 5 (5 best), from fixed cut
-- points in the pipeline vars instead of this run's distribution, so that a score means the
-- same thing every night:
--   r_score 5 if recency_days <= $rfm_r5_days, 4 if <= $rfm_r4_days, 3 if <= $rfm_r3_days,
--           2 if <= $rfm_r2_days, else 1;
--   f_score 5 if frequency >= $rfm_f5_orders, 4 if >= $rfm_f4_orders, 3 if >= $rfm_f3_orders,
--           2 if >= $rfm_f2_orders, else 1;
--   m_score 5 if monetary >= $rfm_m5_spend, 4 if >= $rfm_m4_spend, 3 if >= $rfm_m3_spend,
--           2 if >= $rfm_m2_spend, else 1.
-- Only customers with a paid order as of $as_of are scored.
SELECT customer_id,
       'thresholds' AS method,
       days_since_last_order AS recency_days,
       paid_orders AS frequency,
       net_revenue AS monetary,
       CAST(CASE WHEN days_since_last_order <= $rfm_r5_days THEN 5
                 WHEN days_since_last_order <= $rfm_r4_days THEN 4
                 WHEN days_since_last_order <= $rfm_r3_days THEN 3
                 WHEN days_since_last_order <= $rfm_r2_days THEN 2
                 ELSE 1 END AS INT) AS r_score,
       CAST(CASE WHEN paid_orders >= $rfm_f5_orders THEN 5
                 WHEN paid_orders >= $rfm_f4_orders THEN 4
                 WHEN paid_orders >= $rfm_f3_orders THEN 3
                 WHEN paid_orders >= $rfm_f2_orders THEN 2
                 ELSE 1 END AS INT) AS f_score,
       CAST(CASE WHEN net_revenue >= $rfm_m5_spend THEN 5
                 WHEN net_revenue >= $rfm_m4_spend THEN 4
                 WHEN net_revenue >= $rfm_m3_spend THEN 3
                 WHEN net_revenue >= $rfm_m2_spend THEN 2
                 ELSE 1 END AS INT) AS m_score
FROM customer_features
WHERE paid_orders > 0

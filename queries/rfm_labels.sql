-- rfm_labels: three labelling schemes over the RFM scores, one row per scored customer.
-- Each is a total mapping: every score combination gets exactly one label (a test
-- enumerates all 125). Customers with no paid order have no scores; customer_profile
-- labels them Prospects.
--
-- 1. rf_segment, the 10-segment R-F grid (R = r_score, F = f_score):
--      R 5,   F 4-5: Champions          R 3-4, F 4-5: Loyal
--      R 4-5, F 2-3: Potential Loyalist R 5,   F 1:   New Customers
--      R 4,   F 1:   Promising          R 3,   F 3:   Need Attention
--      R 3,   F 1-2: About To Sleep     R 1-2, F 3-4: At Risk
--      R 1-2, F 5:   Cannot Lose Them   R 1-2, F 1-2: Hibernating
--
-- 2. shopify_group, 10 groups over R and FM = ceil((F + M) / 2), plus Prospects:
--      R 5: FM 1 New, FM 2 Promising, FM 3 Active, FM 4-5 Champions
--      R 4: FM 1-2 Promising, FM 3 Active, FM 4 Loyal, FM 5 Champions
--      R 3: FM 1-3 Needs Attention, FM 4-5 Loyal
--      R 2: FM 1-2 Almost Lost, FM 3-4 At Risk, FM 5 Previously Loyal
--      R 1: FM 1-2 Dormant, FM 3-4 At Risk, FM 5 Previously Loyal
--
-- 3. value_class, the 8-class value model of Chinese CRMs: R, F and M each high or low
--    against a threshold; R is high when recency_days is below it (bought more recently),
--    F and M when the value is above it. The thresholds are the buyers' means, or the vars
--    $value_r_days, $value_f_orders and $value_m_spend where those are 0 or more.
--      important_value 重要价值客户 (R high, F high, M high)
--      important_development 重要发展客户 (R high, F low, M high)
--      important_retain 重要保持客户 (R low, F high, M high)
--      important_winback 重要挽留客户 (R low, F low, M high)
--      general_value 一般价值客户 (R high, F high, M low)
--      general_development 一般发展客户 (R high, F low, M low)
--      general_retain 一般保持客户 (R low, F high, M low)
--      general_winback 一般挽留客户 (R low, F low, M low)
--    A buyer is above or below the mean when its value times the number of buyers is
--    above or below the sum: exact, whatever order the sum is added in. The sums are one
--    row joined to every buyer (a window over all buyers would run on one core).
WITH totals AS (
    SELECT COUNT(*) AS buyers,
           SUM(recency_days) AS recency_sum,
           SUM(frequency) AS frequency_sum,
           SUM(monetary) AS monetary_sum
    FROM rfm
),
sides AS (
    SELECT r.customer_id, r.r_score, r.f_score, r.m_score,
           CAST((r.f_score + r.m_score + 1) / 2 AS INT) AS fm_score,
           CASE WHEN $value_r_days >= 0.0 THEN CAST(r.recency_days AS DOUBLE) < $value_r_days
                ELSE r.recency_days * t.buyers < t.recency_sum END AS r_high,
           CASE WHEN $value_f_orders >= 0.0 THEN CAST(r.frequency AS DOUBLE) > $value_f_orders
                ELSE r.frequency * t.buyers > t.frequency_sum END AS f_high,
           CASE WHEN $value_m_spend >= 0.0 THEN CAST(r.monetary AS DOUBLE) > $value_m_spend
                ELSE r.monetary * t.buyers > t.monetary_sum END AS m_high
    FROM totals t
    CROSS JOIN rfm r
)
SELECT customer_id,
       CASE WHEN r_score = 5 AND f_score >= 4 THEN 'Champions'
            WHEN r_score >= 3 AND f_score >= 4 THEN 'Loyal'
            WHEN r_score >= 4 AND f_score >= 2 THEN 'Potential Loyalist'
            WHEN r_score = 5 THEN 'New Customers'
            WHEN r_score = 4 THEN 'Promising'
            WHEN r_score = 3 AND f_score = 3 THEN 'Need Attention'
            WHEN r_score = 3 THEN 'About To Sleep'
            WHEN f_score = 5 THEN 'Cannot Lose Them'
            WHEN f_score >= 3 THEN 'At Risk'
            ELSE 'Hibernating' END AS rf_segment,
       fm_score,
       CASE WHEN r_score = 5 AND fm_score = 1 THEN 'New'
            WHEN r_score >= 4 AND fm_score <= 2 THEN 'Promising'
            WHEN r_score >= 4 AND fm_score = 3 THEN 'Active'
            WHEN r_score >= 4 AND (fm_score = 5 OR r_score = 5) THEN 'Champions'
            WHEN r_score >= 3 AND fm_score >= 4 THEN 'Loyal'
            WHEN r_score = 3 THEN 'Needs Attention'
            WHEN fm_score = 5 THEN 'Previously Loyal'
            WHEN fm_score >= 3 THEN 'At Risk'
            WHEN r_score = 2 THEN 'Almost Lost'
            ELSE 'Dormant' END AS shopify_group,
       CASE WHEN m_high THEN 'important_' ELSE 'general_' END
           || CASE WHEN r_high AND f_high THEN 'value'
                   WHEN r_high THEN 'development'
                   WHEN f_high THEN 'retain'
                   ELSE 'winback' END AS value_class,
       CASE WHEN m_high THEN '重要' ELSE '一般' END
           || CASE WHEN r_high AND f_high THEN '价值'
                   WHEN r_high THEN '发展'
                   WHEN f_high THEN '保持'
                   ELSE '挽留' END || '客户' AS value_class_label
FROM sides

-- customer_predictions: one row per buyer (purchase_histories) with what the models expect
-- of them after the end of $as_of (docs/shipped-pipeline.md, "Predictions"):
--   p_alive                       the probability they are still a customer (BG/NBD). A
--                                 one-time buyer is 1: the model lets customers leave only
--                                 right after a purchase.
--   expected_purchases_90d/_365d  purchases (purchase days) expected in the next 90 / 365 days
--   expected_average_order_value  Gamma-Gamma: p(gamma + x·m) / (p·x + q − 1), their own
--                                 average m weighed against everyone's; for x = 0 the
--                                 population's p·gamma / (q − 1)
--   predicted_clv_12m             that value times the purchases expected in each of the next
--                                 12 months (of 30.4375 days, 365.25 / 12), each discounted by
--                                 (1 + $clv_monthly_discount)^month, as `lifetimes` computes CLV
--   expected_next_order_date      the first day by whose end one more purchase is expected
--                                 (E[purchases] reaches 1); NULL if not within
--                                 $next_order_horizon_days days
--   churn_risk                    high if p_alive < $churn_high_below, medium if below
--                                 $churn_low_from, else low; NULL for one-time buyers (above)
-- The predictions depend only on (x, t_x, T), so they are computed once per distinct history.
WITH histories AS (
    SELECT DISTINCT x, t_x, "T" FROM purchase_histories
),
predicted AS (
    SELECT h.x, h.t_x, h."T",
           bgnbd_p_alive(m.fit, h.x, h.t_x, h."T") AS p_alive,
           bgnbd_expected_purchases(m.fit, 90.0 / CAST($model_period_days AS DOUBLE), h.x, h.t_x, h."T")
               AS expected_purchases_90d,
           bgnbd_expected_purchases(m.fit, 365.0 / CAST($model_period_days AS DOUBLE), h.x, h.t_x, h."T")
               AS expected_purchases_365d,
           bgnbd_discounted_purchases(m.fit, 12, 30.4375 / CAST($model_period_days AS DOUBLE),
                                      $clv_monthly_discount, h.x, h.t_x, h."T")
               AS discounted_purchases,
           bgnbd_time_to_purchases(m.fit, 1.0, CAST($next_order_horizon_days AS DOUBLE) / CAST($model_period_days AS DOUBLE),
                                   h.x, h.t_x, h."T") * CAST($model_period_days AS DOUBLE) AS days_to_next_order
    FROM histories h
    CROSS JOIN purchase_model m
),
valued AS (
    SELECT c.*,
           s.fit.p * (s.fit.gamma + c.x * COALESCE(c.mean_repeat_value, 0))
               / (s.fit.p * c.x + s.fit.q - 1) AS expected_average_order_value
    FROM purchase_histories c
    CROSS JOIN spend_model s
)
SELECT v.customer_id,
       v.x,
       v.t_x,
       v."T",
       p.p_alive,
       p.expected_purchases_90d,
       p.expected_purchases_365d,
       v.expected_average_order_value,
       p.discounted_purchases * v.expected_average_order_value AS predicted_clv_12m,
       CAST($as_of AS DATE) + CAST(CEIL(p.days_to_next_order) AS INT) AS expected_next_order_date,
       CASE WHEN v.x = 0 THEN NULL
            WHEN p.p_alive < $churn_high_below THEN 'high'
            WHEN p.p_alive < $churn_low_from THEN 'medium'
            ELSE 'low' END AS churn_risk
FROM valued v
JOIN predicted p ON p.x = v.x AND p.t_x = v.t_x AND p."T" = v."T"

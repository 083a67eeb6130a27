-- likely_to_churn: repeat buyers who were active (a paid order in the last
-- $churn_active_days days: days_since_last_order < N, as every "in the last N days") but
-- whom the BG/NBD model now gives a probability of still being a customer below
-- $churn_p_alive: their buying has stopped for longer than their own rhythm makes likely.
-- Lapsed long ago is hard_lapse; one-time buyers are one_time_lapsed (the model cannot tell
-- whether they left).
SELECT p.customer_id
FROM customer_predictions p
JOIN customer_features f ON f.customer_id = p.customer_id
WHERE p.x > 0
  AND p.p_alive < $churn_p_alive
  AND f.days_since_last_order < $churn_active_days

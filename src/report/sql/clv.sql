-- Every buyer's predicted 12-month CLV, smallest first; the report bins them.
SELECT CAST(predicted_clv_12m AS DOUBLE) AS clv
FROM customer_predictions
WHERE predicted_clv_12m IS NOT NULL
ORDER BY clv

-- high_predicted_value: the buyers in the top $high_predicted_value_share (a share, 0.1 =
-- the top 10 %) by predicted 12-month customer lifetime value (customer_predictions), ties
-- all in or all out.
SELECT customer_id
FROM (
    SELECT customer_id,
           CUME_DIST() OVER (ORDER BY predicted_clv_12m DESC) AS share_at_or_above
    FROM customer_predictions
)
WHERE share_at_or_above <= $high_predicted_value_share

-- expected_to_buy_soon: buyers for whom the BG/NBD model expects one more purchase within
-- $buy_soon_days days after as_of (customer_predictions.expected_next_order_date), day N
-- included: expected_next_order_date <= as_of + N.
SELECT customer_id
FROM customer_predictions
WHERE expected_next_order_date <= CAST($as_of AS DATE) + CAST($buy_soon_days AS INT)

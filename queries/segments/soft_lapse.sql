-- soft_lapse: buyers whose last paid order was 91 to 180 days before as_of, both included.
SELECT customer_id FROM customer_features
WHERE paid_orders > 0 AND days_since_last_order BETWEEN 91 AND 180

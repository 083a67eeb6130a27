-- recent_buyers: customers whose last paid order was within the last $recent_days days,
-- as_of included.
SELECT customer_id FROM customer_features
WHERE paid_orders > 0 AND days_since_last_order < $recent_days

-- hard_lapse: buyers whose last paid order was more than 180 days before as_of.
SELECT customer_id FROM customer_features
WHERE paid_orders > 0 AND days_since_last_order > 180

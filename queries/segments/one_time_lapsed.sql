-- one_time_lapsed: customers with exactly one paid order, placed more than $lapse_days
-- days before as_of.
SELECT customer_id FROM customer_features
WHERE paid_orders = 1 AND days_since_last_order > $lapse_days

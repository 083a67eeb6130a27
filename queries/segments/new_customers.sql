-- new_customers: customers whose first paid order was within the last $new_customer_days
-- days, as_of included (0 = first order on the as_of day itself).
SELECT customer_id FROM customer_features
WHERE paid_orders > 0 AND days_since_first_order < $new_customer_days

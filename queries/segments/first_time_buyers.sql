-- first_time_buyers: customers with exactly one paid order.
SELECT customer_id FROM customer_features WHERE paid_orders = 1

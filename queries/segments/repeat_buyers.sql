-- repeat_buyers: customers with two or more paid orders.
SELECT customer_id FROM customer_features WHERE paid_orders >= 2

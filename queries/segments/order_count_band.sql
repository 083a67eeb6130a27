-- order_count_band: customers whose number of paid orders is between $orders_min and
-- $orders_max, both included (equal: both the same; at least: a high maximum).
SELECT customer_id FROM customer_features
WHERE paid_orders BETWEEN $orders_min AND $orders_max

-- The fold of customer_orders: merges results of customer_orders (here the table of that
-- name: its kept sums, and those of the files since) into one, as if it had been computed
-- over all their orders at once. The least of the firsts, the greatest of the lasts, the
-- sums of the counts and amounts.
SELECT customer_id,
       MIN(first_order_at) AS first_order_at,
       MAX(last_order_at) AS last_order_at,
       MIN(first_order_day) AS first_order_day,
       MAX(last_order_day) AS last_order_day,
       SUM(paid_orders) AS paid_orders,
       SUM(net_revenue) AS net_revenue
FROM customer_orders
GROUP BY customer_id

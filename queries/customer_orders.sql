-- customer_orders: per customer, what their paid orders add up to (see paid_orders): the
-- first and last order, as times and as days in the pipeline's time zone, how many, and the
-- net revenue. customer_features reads it.
--
-- Incremental over orders with a fold (customer_orders_fold.sql): the paid orders of every
-- file wholly before the night are summed once and the sums kept; a later night sums only
-- the files that are new since and merges the two (docs/incremental.md, "Results carried
-- across nights"). So each column must be one that merges: a least, a greatest, a count or
-- a sum, never an average or a count of distinct values.
SELECT customer_id,
       MIN(ordered_at) AS first_order_at,
       MAX(ordered_at) AS last_order_at,
       MIN(order_date) AS first_order_date,
       MAX(order_date) AS last_order_date,
       COUNT(*) AS paid_orders,
       SUM(net_amount) AS net_revenue
FROM paid_orders
GROUP BY customer_id

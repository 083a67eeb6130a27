-- customer_order_facts: per file of orders, one row per customer with paid orders in it
-- (see paid_orders): their first and last order, how many, and their net amount.
-- customer_features folds the files' rows into one per customer.
--
-- An incremental step over orders, like paid_orders, which it reads on the same file: each
-- file's rows are kept for later nights. Whatever it computes must fold across files:
-- counts and sums add up, firsts and lasts are the least and greatest.
SELECT customer_id,
       MIN(ordered_at) AS first_order_at,
       MAX(ordered_at) AS last_order_at,
       COUNT(*) AS paid_orders,
       SUM(net_amount) AS net_revenue
FROM paid_orders
GROUP BY customer_id

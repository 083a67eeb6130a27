-- customer_orders: per customer, what their paid orders add up to (see paid_orders): the
-- first and last order, as times and as day numbers (days since 1970-01-01, of the order's
-- day in the pipeline's time zone), how many, and the net revenue. customer_features reads it.
--
-- Day numbers, not dates: customer_features counts the days since from them, and DataFusion
-- 55 fails to plan a filter on a difference of dates read from Parquet, as this result is
-- (docs/pipelines.md, "Two DataFusion bugs"); a segment over those counts would be that
-- filter when planned into its reader.
--
-- Incremental over orders with a fold (customer_orders_fold.sql): the paid orders of every
-- file wholly before the night are summed once and the sums kept; a later night sums only
-- the files that are new since and merges the two (docs/incremental.md, "Results carried
-- across nights"). So each column must be one that merges: a least, a greatest, a count or
-- a sum, never an average or a count of distinct values.
SELECT customer_id,
       MIN(ordered_at) AS first_order_at,
       MAX(ordered_at) AS last_order_at,
       MIN(CAST(order_date - DATE '1970-01-01' AS BIGINT)) AS first_order_day,
       MAX(CAST(order_date - DATE '1970-01-01' AS BIGINT)) AS last_order_day,
       COUNT(*) AS paid_orders,
       SUM(net_amount) AS net_revenue
FROM paid_orders
GROUP BY customer_id

-- high_value_recent: customers whose net spend on paid orders in the last
-- $high_value_days days (as_of included) is above $high_value_min_spend.
--
-- "In the last N days" is written as a comparison of dates (order_date after as_of minus
-- N days) rather than as `as_of - order_date < N`: DataFusion 55 fails to plan a filter on
-- a difference of dates over Parquet files with statistics ("Only intervals with the same
-- data type are comparable"), since its interval analysis learnt dates (apache/datafusion
-- pull 21520). The cast keeps the var an integer (without it, the var would be taken for a
-- date).
SELECT customer_id
FROM paid_orders
WHERE order_date > CAST($as_of AS DATE) - CAST($high_value_days AS INT)
GROUP BY customer_id
HAVING SUM(net_amount) > $high_value_min_spend

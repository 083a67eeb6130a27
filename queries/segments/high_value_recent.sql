-- high_value_recent: customers whose net spend on paid orders in the last
-- $high_value_days days (as_of included) is above $high_value_min_spend.
--
-- Days are counted as day numbers (a date cast to INT): DataFusion 55 fails to plan a filter
-- on `date - date_column` over Parquet files with statistics ("Only intervals with the same
-- data type are comparable"), since its interval analysis learnt dates (apache/datafusion
-- pull 21520).
SELECT customer_id
FROM paid_orders
WHERE CAST(CAST($as_of AS DATE) AS INT) - CAST(order_date AS INT) < $high_value_days
GROUP BY customer_id
HAVING SUM(net_amount) > $high_value_min_spend

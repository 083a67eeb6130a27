-- purchase_histories: what the predictive models read, one row per buyer (a customer of
-- customer_features with at least one paid order), in periods of $model_period_days days
-- (7: weeks, as in the papers). As in the papers and the `lifetimes` library, a purchase is
-- a calendar day with paid orders (several orders on one day are one purchase, of their
-- summed net amount), placed at the start of its day; observation ends at the end of the
-- $as_of day.
--   x                  repeat purchases: purchase days after the first
--   t_x                from the first purchase day to the last
--   T                  from the first purchase day to the end of $as_of (so t_x < T)
--   mean_repeat_value  the average net amount of the repeat purchases; NULL when x = 0
WITH days AS (
    SELECT p.customer_id,
           p.order_date,
           SUM(p.net_amount) AS amount
    FROM paid_orders p
    JOIN customer_features f ON f.customer_id = p.customer_id
    GROUP BY p.customer_id, p.order_date
),
ordered AS (
    SELECT customer_id,
           order_date,
           amount,
           MIN(order_date) OVER (PARTITION BY customer_id) AS first_day
    FROM days
)
SELECT customer_id,
       COUNT(*) - 1 AS x,
       CAST(MAX(order_date) - MIN(order_date) AS DOUBLE) / $model_period_days AS t_x,
       CAST(CAST($as_of AS DATE) - MIN(order_date) + 1 AS DOUBLE) / $model_period_days AS "T",
       -- summed as decimals, exact whatever order the partitions come in, then divided once
       CAST(SUM(CASE WHEN order_date > first_day THEN amount END) AS DOUBLE) / (COUNT(*) - 1)
           AS mean_repeat_value
FROM ordered
GROUP BY customer_id

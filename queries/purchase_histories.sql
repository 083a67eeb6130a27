-- purchase_histories: what the predictive models read, one row per buyer (a customer of
-- customer_features with at least one paid order), in periods of $model_period_days days
-- (7: weeks, as in the papers). As in the papers and the `lifetimes` library, a purchase is
-- a calendar day with paid orders (several orders on one day are one purchase, of their
-- summed net amount), counted in whole days from the first purchase day to the $as_of day.
--   x                  repeat purchases: purchase days after the first
--   t_x                from the first purchase day to the last
--   T                  from the first purchase day to the $as_of day (so t_x <= T; a buyer
--                      whose first purchase is on the $as_of day has T = 0, as in
--                      `lifetimes`' summary_data_from_transaction_data)
--   mean_repeat_value  the average net amount of the repeat purchases; NULL when x = 0
--
-- Aggregated first and joined to customer_features (the members) last: a join of the
-- buyers is a fraction of a join of every order.
WITH days AS (
    SELECT customer_id, order_date, SUM(net_amount) AS amount
    FROM paid_orders
    WHERE customer_id IS NOT NULL
    GROUP BY customer_id, order_date
),
ordered AS (
    SELECT customer_id, order_date, amount,
           MIN(order_date) OVER (PARTITION BY customer_id) AS first_day
    FROM days
),
per_customer AS (
    SELECT customer_id,
           COUNT(*) - 1 AS x,
           MIN(order_date) AS first_day,
           MAX(order_date) AS last_day,
           -- the repeat purchases' sum, exact in decimals, divided once below
           SUM(CASE WHEN order_date > first_day THEN amount END) AS repeat_total
    FROM ordered
    GROUP BY customer_id
)
SELECT c.customer_id,
       c.x,
       CAST(c.last_day - c.first_day AS DOUBLE) / $model_period_days AS t_x,
       CAST(CAST($as_of AS DATE) - c.first_day AS DOUBLE) / $model_period_days AS "T",
       CAST(c.repeat_total AS DOUBLE) / c.x AS mean_repeat_value
FROM per_customer c
JOIN customer_features f ON f.customer_id = c.customer_id

-- paid_orders, converted into the shop's currency ($currency), for a shop that sells in
-- several (docs/shipped-pipeline.md, "Currencies"). Point the paid_orders step here, and rename the shipped
-- incremental step to paid_orders_as_placed: its rows (paid_orders.sql) stay in each
-- order's own currency, and this step, computed every night, converts them.
--
-- The rate in force on an order's day (order_date, in the pipeline's time zone) is the
-- rates row of its currency with the latest day on or before it: a day without a rate (a
-- weekend, a holiday) takes the last one before. A rate is the shop's currency per unit of
-- the order's; a NULL rate is no rate. net_amount (total less refunds, at the order's day)
-- is converted and rounded to cents, half away from zero, order by order, before anything
-- is summed. Orders in the shop's currency are taken as they are. An order whose currency
-- has no rate on or before its day fails the run (the check orders_without_rate, which
-- names its currency).
WITH rates_in_force AS (
    SELECT currency, day, rate,
           LEAD(day) OVER (PARTITION BY currency ORDER BY day) AS next_day
    FROM rates
    WHERE rate IS NOT NULL AND day <= CAST($as_of AS DATE)
),
daily_rates AS (
    -- One row per currency and day, from its first rate up to as_of.
    SELECT currency, rate,
           unnest(range(day, COALESCE(next_day, CAST($as_of AS DATE) + 1), INTERVAL '1 day')) AS day
    FROM rates_in_force
)
SELECT o.order_id,
       o.customer_id,
       o.ordered_at,
       o.order_date,
       CASE WHEN o.currency = $currency THEN o.net_amount
            ELSE CAST(o.net_amount * r.rate AS DECIMAL(14, 2)) END AS net_amount,
       $currency AS currency
FROM paid_orders_as_placed o
LEFT JOIN daily_rates r ON r.currency = o.currency AND r.day = o.order_date

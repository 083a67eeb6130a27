-- orders_without_rate: with converted currencies (paid_orders_converted.sql), the paid
-- orders whose currency has no rate on or before their day, one row per currency: any row
-- fails the run, since those orders would be missing from every sum. Land the rates (or
-- an earlier one) and run the night again.
WITH first_rates AS (
    SELECT currency, MIN(day) AS first_day
    FROM rates
    WHERE rate IS NOT NULL
    GROUP BY currency
)
SELECT o.currency, COUNT(*) AS orders, MIN(o.order_date) AS first_order_day,
       MIN(f.first_day) AS first_rate_day
FROM paid_orders_as_placed o
LEFT JOIN first_rates f ON f.currency = o.currency
WHERE o.currency <> $currency AND (f.first_day IS NULL OR o.order_date < f.first_day)
GROUP BY o.currency
ORDER BY orders DESC

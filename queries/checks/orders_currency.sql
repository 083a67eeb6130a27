-- orders_currency: the orders placed by the end of the as_of day in a currency other than
-- the shop's ($currency), one row per currency with its orders. Any row fails the run: the
-- amounts would be summed as if they were the shop's. A NULL currency is the shop's. A shop
-- that sells in several currencies converts them instead (docs/shipped-pipeline.md, "Currencies").
SELECT currency, COUNT(*) AS orders, MIN(ordered_at) AS first_ordered_at
FROM orders
WHERE currency <> $currency AND ordered_at < $as_of_end
GROUP BY currency
ORDER BY orders DESC

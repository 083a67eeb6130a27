-- big_spenders: the top decile of buyers by net spend: customers whose net revenue is above
-- that of at least 90% of buyers (k / n > 0.9, where k counts buyers with equal or lower
-- spend). Equal spend is always in or out together.
-- k comes from the buyers counted per distinct amount, so that only the amounts are put in
-- order (a window over every buyer would sort them all on one core).
WITH buyers AS (
    SELECT customer_id, net_revenue
    FROM customer_features
    WHERE paid_orders > 0
),
amounts AS (
    SELECT net_revenue,
           SUM(buyers_with_it) OVER (ORDER BY net_revenue) AS at_or_below,
           SUM(buyers_with_it) OVER () AS buyers
    FROM (SELECT net_revenue, COUNT(*) AS buyers_with_it FROM buyers GROUP BY net_revenue) AS counted
)
SELECT b.customer_id
FROM buyers b
JOIN amounts a ON a.net_revenue = b.net_revenue
WHERE 10 * a.at_or_below > 9 * a.buyers

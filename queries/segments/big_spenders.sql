-- big_spenders: the top decile of buyers by net spend: customers whose net revenue is above
-- that of at least 90% of buyers (k / n > 0.9, where k counts buyers with equal or lower
-- spend). Equal spend is always in or out together.
SELECT customer_id FROM (
    SELECT customer_id,
           COUNT(*) OVER (ORDER BY net_revenue) AS at_or_below,
           COUNT(*) OVER () AS buyers
    FROM customer_features
    WHERE paid_orders > 0
) AS ranked
WHERE 10 * at_or_below > 9 * buyers

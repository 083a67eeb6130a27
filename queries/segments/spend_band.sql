-- spend_band: buyers whose net revenue is between $spend_min and $spend_max, both included.
-- For "equal to x" set both to x; for "less than x" set spend_min to 0 and spend_max just
-- under x; for "more than x" set spend_max very high.
SELECT customer_id FROM customer_features
WHERE paid_orders > 0 AND net_revenue BETWEEN $spend_min AND $spend_max

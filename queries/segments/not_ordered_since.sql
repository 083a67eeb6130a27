-- not_ordered_since: buyers whose last paid order was before the day $not_since (that day
-- excluded; days in the pipeline's time zone): they have not ordered on or since it.
SELECT customer_id FROM customer_features
WHERE paid_orders > 0 AND CAST(last_order_at AS DATE) < $not_since

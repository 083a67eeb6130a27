-- overdue: repeat buyers who are late against their own rhythm: the days since their last
-- paid order exceed $overdue_factor times their average gap between paid orders
-- ((last - first) / (orders - 1) days).
SELECT customer_id FROM customer_features
WHERE paid_orders >= 2
  AND CAST(days_since_last_order AS DOUBLE) * (paid_orders - 1)
      > CAST(days_since_first_order - days_since_last_order AS DOUBLE) * $overdue_factor

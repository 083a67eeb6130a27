-- overdue: repeat buyers who are late against their own rhythm: the days since their last
-- paid order exceed $overdue_factor times their average gap between paid orders
-- ((last - first) / (orders - 1) days). Repeat buyers whose orders all fell on one day have
-- no rhythm yet (an average gap of 0) and are not overdue.
SELECT customer_id FROM customer_features
WHERE paid_orders >= 2
  AND days_since_first_order > days_since_last_order
  AND CAST(days_since_last_order AS DOUBLE) * (paid_orders - 1)
      > CAST(days_since_first_order - days_since_last_order AS DOUBLE) * $overdue_factor

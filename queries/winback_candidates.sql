-- winback_candidates: lapsed customers worth winning back as of $as_of, each with the reason
-- it would be left out of the list (NULL: it goes on the list).
--
-- Lapsed and worth it: the last paid order was $winback_min_days to $winback_max_days days
-- before as_of (both included), and net revenue is at least $winback_min_spend. A customer
-- who ordered again by as_of is not lapsed, by that same rule.
-- Left out, first matching reason:
--   'no marketing consent'       neither email (with an address) nor SMS (with a phone);
--                                an unknown (NULL) consent is no consent
--   'contacted within cooldown'  on a published winback_list dated less than $cooldown_days
--                                days before as_of
-- overdue_ratio: days since the last order over the customer's usual gap between orders:
-- their average gap for repeat buyers; $winback_min_days for one-time buyers and for repeat
-- buyers whose orders all fell on one day (an average gap of 0 says nothing about rhythm).
-- Blank emails and phones are NULL in customer_features, so they are no contact point.
-- predicted_clv_12m is the customer's from customer_predictions (winback_list may rank by it).
WITH lapsed AS (
    SELECT customer_id, email, phone, email_subscribed, sms_subscribed, last_order_at,
           paid_orders, net_revenue, days_since_last_order, rf_segment, shopify_group,
           CAST(days_since_last_order AS DOUBLE) / CASE
               WHEN paid_orders > 1 AND days_since_first_order > days_since_last_order
                   THEN CAST(days_since_first_order - days_since_last_order AS DOUBLE) / (paid_orders - 1)
               ELSE CAST($winback_min_days AS DOUBLE) END AS overdue_ratio
    FROM customer_profile
    WHERE paid_orders > 0
      AND days_since_last_order BETWEEN $winback_min_days AND $winback_max_days
      AND net_revenue >= $winback_min_spend
),
recently_contacted AS (
    SELECT DISTINCT customer_id
    FROM history_winback_list
    WHERE as_of > CAST($as_of AS DATE) - CAST(CAST($cooldown_days AS VARCHAR) || ' days' AS INTERVAL)
)
SELECT l.*,
       p.predicted_clv_12m,
       CASE WHEN NOT ((COALESCE(l.email_subscribed, false) AND l.email IS NOT NULL)
                      OR (COALESCE(l.sms_subscribed, false) AND l.phone IS NOT NULL))
                THEN 'no marketing consent'
            WHEN r.customer_id IS NOT NULL THEN 'contacted within cooldown'
       END AS left_out_because
FROM lapsed l
LEFT JOIN recently_contacted r ON r.customer_id = l.customer_id
LEFT JOIN customer_predictions p ON p.customer_id = l.customer_id

-- winback_list: the campaign list, from winback_candidates (see there for who qualifies),
-- ranked by net revenue (highest first), then by how overdue (overdue_ratio, highest first),
-- then by customer_id; with $winback_by_predicted_clv true, by predicted 12-month customer
-- lifetime value (highest first; customer_predictions) before all that. Each row says why the customer is on it and carries what a campaign
-- tool needs.
SELECT CAST($as_of AS DATE) AS as_of,
       $run_id AS run_id,
       CAST(ROW_NUMBER() OVER (ORDER BY
           CASE WHEN $winback_by_predicted_clv THEN predicted_clv_12m END DESC NULLS LAST,
           net_revenue DESC, overdue_ratio DESC, customer_id) AS INT) AS rank,
       customer_id,
       email,
       phone,
       email_subscribed,
       sms_subscribed,
       last_order_at,
       paid_orders,
       net_revenue,
       predicted_clv_12m,
       rf_segment,
       shopify_group,
       CAST(days_since_last_order AS VARCHAR) || ' days since the last order (' ||
           CAST(CAST(overdue_ratio AS DECIMAL(10, 1)) AS VARCHAR) || 'x the usual gap); ' ||
           CAST(paid_orders AS VARCHAR) || ' orders, ' || CAST(net_revenue AS VARCHAR) ||
           ' net spend; ' || rf_segment AS reason
FROM winback_candidates
WHERE left_out_because IS NULL

-- winback_list: the campaign list, from winback_candidates (see there for who qualifies),
-- ranked by net revenue (highest first), then by how overdue (overdue_ratio, highest first),
-- then by customer_id; with $winback_by_predicted_clv true, by predicted 12-month customer
-- lifetime value (highest first; customer_predictions) before all that. Each row says why the customer is on it and carries what a campaign
-- tool needs.
--
-- The ranking orders only the keys, and the rest of each row joins it after: a window's rows
-- cannot spill, and on a cluster one task merges every candidate's (at 10M customers the
-- whole rows, 5.8 GB, did not fit an executor's 6 GiB). So the files are not in rank order:
-- order by rank to read the list in order.
WITH ranked AS (
    SELECT customer_id,
           CAST(ROW_NUMBER() OVER (ORDER BY
               CASE WHEN $winback_by_predicted_clv THEN predicted_clv_12m END DESC NULLS LAST,
               net_revenue DESC, overdue_ratio DESC, customer_id) AS INT) AS rank
    FROM winback_candidates
    WHERE left_out_because IS NULL
)
SELECT CAST($as_of AS DATE) AS as_of,
       $run_id AS run_id,
       r.rank,
       c.customer_id,
       c.email,
       c.phone,
       c.email_subscribed,
       c.sms_subscribed,
       c.last_order_at,
       c.paid_orders,
       c.net_revenue,
       c.predicted_clv_12m,
       c.rf_segment,
       c.shopify_group,
       CAST(c.days_since_last_order AS VARCHAR) || ' days since the last order (' ||
           CAST(CAST(c.overdue_ratio AS DECIMAL(10, 1)) AS VARCHAR) || 'x the usual gap); ' ||
           CAST(c.paid_orders AS VARCHAR) || ' orders, ' || CAST(c.net_revenue AS VARCHAR) ||
           ' net spend; ' || c.rf_segment AS reason
FROM ranked r
JOIN winback_candidates c ON c.customer_id = r.customer_id

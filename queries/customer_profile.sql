-- customer_profile: one row per customer (signed up by as_of) with everything a BI tool or
-- a campaign tool joins to: features, RFM values and scores, the three RFM labels
-- (customers without a paid order are Prospects in each scheme), and the sorted list of the
-- segments the customer is in (empty when none).
WITH memberships AS (
    -- Sorting each small list afterwards gives the same lists as
    -- array_agg(segment ORDER BY segment), which DataFusion 55 computes one group at a time:
    -- over 100x slower, and 8 GiB, for a million customers (BENCHMARKS.md).
    SELECT customer_id,
           array_sort(array_agg(segment)) AS segments,
           COUNT(*) AS segment_count
    FROM segment_membership
    GROUP BY customer_id
)
SELECT f.customer_id,
       f.email,
       f.phone,
       f.country,
       f.email_subscribed,
       f.sms_subscribed,
       f.created_at,
       f.first_order_at,
       f.last_order_at,
       f.paid_orders,
       f.net_revenue,
       f.average_order_value,
       f.days_since_first_order,
       f.days_since_last_order,
       r.recency_days,
       r.frequency,
       r.monetary,
       r.r_score,
       r.f_score,
       r.m_score,
       COALESCE(l.rf_segment, 'Prospects') AS rf_segment,
       COALESCE(l.shopify_group, 'Prospects') AS shopify_group,
       COALESCE(l.value_class, 'prospect') AS value_class,
       COALESCE(l.value_class_label, '潜在客户') AS value_class_label,
       COALESCE(m.segment_count, 0) AS segment_count,
       m.segments
FROM customer_features f
LEFT JOIN rfm r ON r.customer_id = f.customer_id
LEFT JOIN rfm_labels l ON l.customer_id = f.customer_id
LEFT JOIN memberships m ON m.customer_id = f.customer_id

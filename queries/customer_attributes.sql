-- customer_attributes: one row per customer (signed up by as_of) with everything known of
-- them before segments are drawn: features, RFM values and scores (fm_score, the rounded-up
-- mean of F and M, is what shopify_group reads), and the three RFM labels (customers
-- without a paid order are Prospects in each scheme). Segments may read it;
-- customer_profile adds each customer's segments to it.
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
       f.currency,
       f.days_since_first_order,
       f.days_since_last_order,
       r.recency_days,
       r.frequency,
       r.monetary,
       r.r_score,
       r.f_score,
       r.m_score,
       l.fm_score,
       COALESCE(l.rf_segment, 'Prospects') AS rf_segment,
       COALESCE(l.shopify_group, 'Prospects') AS shopify_group,
       COALESCE(l.value_class, 'prospect') AS value_class,
       COALESCE(l.value_class_label, '潜在客户') AS value_class_label
FROM customer_features f
LEFT JOIN rfm r ON r.customer_id = f.customer_id
LEFT JOIN rfm_labels l ON l.customer_id = f.customer_id

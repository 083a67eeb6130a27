-- subscribed_no_order: customers who accept marketing email (and have an address) but have
-- no paid order yet.
SELECT customer_id FROM customer_features
WHERE paid_orders = 0 AND email_subscribed AND email IS NOT NULL

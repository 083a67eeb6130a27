-- subscribed_first_order: first-time buyers (exactly one paid order) who accept marketing
-- email and have an address: the audience for a second-purchase campaign.
SELECT customer_id FROM customer_features
WHERE paid_orders = 1 AND email_subscribed AND email IS NOT NULL

-- bought_collection: customers with a paid order (up to as_of) containing a product of the
-- collection $collection.
SELECT DISTINCT o.customer_id
FROM orders o
JOIN order_items i USING (order_id)
WHERE o.status = 'paid'
  AND o.ordered_at < CAST($as_of AS TIMESTAMP) + INTERVAL '1 day'
  AND i.collection = $collection

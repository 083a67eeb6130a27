-- bought_collection: customers with a paid order (up to as_of) containing a product of the
-- collection $collection.
SELECT DISTINCT o.customer_id
FROM paid_orders o
JOIN order_items i USING (order_id)
WHERE i.collection = $collection

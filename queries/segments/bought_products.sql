-- bought_products: customers with a paid order (up to as_of) containing any of the products
-- $product_ids.
SELECT DISTINCT o.customer_id
FROM orders o
JOIN order_items i USING (order_id)
WHERE o.status = 'paid'
  AND o.ordered_at < CAST($as_of AS TIMESTAMP) + INTERVAL '1 day'
  AND array_has($product_ids, i.product_id)

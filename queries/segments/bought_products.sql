-- bought_products: customers with a paid order (up to as_of) containing any of the products
-- $product_ids.
SELECT DISTINCT o.customer_id
FROM paid_orders o
JOIN order_items i USING (order_id)
WHERE array_has($product_ids, i.product_id)

-- never_bought_products: buyers none of whose paid orders (up to as_of) contained any of
-- the products $product_ids.
SELECT customer_id FROM customer_features WHERE paid_orders > 0
EXCEPT
SELECT o.customer_id
FROM paid_orders o
JOIN order_items i USING (order_id)
WHERE array_has($product_ids, i.product_id)

-- bought_a_not_b: customers who bought from collection $collection_a but never from
-- $collection_b (paid orders up to as_of): the cross-sell audience for b.
WITH bought AS (
    SELECT o.customer_id, i.collection
    FROM paid_orders o
    JOIN order_items i USING (order_id)
)
SELECT customer_id FROM bought WHERE collection = $collection_a
EXCEPT
SELECT customer_id FROM bought WHERE collection = $collection_b

-- bought_a_not_b: customers who bought from collection $collection_a but never from
-- $collection_b (paid orders up to as_of): the cross-sell audience for b.
-- One pass over the items of both collections (an EXCEPT of two reads joined the orders twice).
SELECT o.customer_id
FROM paid_orders o
JOIN order_items i USING (order_id)
WHERE i.collection IN ($collection_a, $collection_b)
GROUP BY o.customer_id
HAVING bool_or(i.collection = $collection_a) AND NOT bool_or(i.collection = $collection_b)

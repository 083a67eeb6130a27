-- prospects: customers who had signed up by as_of but have no paid order yet.
SELECT customer_id FROM customer_features WHERE paid_orders = 0

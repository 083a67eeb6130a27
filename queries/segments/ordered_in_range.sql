-- ordered_in_range: customers with a paid order placed on a day from $range_start to
-- $range_end, both included (days in the pipeline's time zone), and not after as_of.
SELECT DISTINCT customer_id
FROM paid_orders
WHERE order_date BETWEEN $range_start AND $range_end

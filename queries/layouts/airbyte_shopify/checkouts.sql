-- checkouts: Airbyte's `abandoned_checkouts` stream (fetched with status=any, so completed
-- checkouts come too) as the segment library's checkouts table. The customer is the nested
-- `customer.id`; a guest's checkout has none, counts for no one and is counted in the run
-- record (`unmatched`, under checkouts).
SELECT id AS checkout_id,
       customer['id'] AS customer_id,
       created_at,
       completed_at
FROM airbyte_abandoned_checkouts

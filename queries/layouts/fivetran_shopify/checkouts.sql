-- checkouts: Fivetran's ABANDONED_CHECKOUT table as the segment library's checkouts table.
-- Deleted rows are left out; a guest's checkout has no customer_id, counts for no one and is
-- counted in the run record (`unmatched`, under checkouts).
SELECT id AS checkout_id,
       customer_id,
       created_at,
       completed_at
FROM fivetran_abandoned_checkout
WHERE NOT COALESCE(_fivetran_deleted, false)

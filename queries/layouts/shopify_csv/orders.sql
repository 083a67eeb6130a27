-- orders: Shopify's orders export as the segment library's orders table: one row per order
-- (the export's rows are line items, grouped by the order's Name), placed before the end of
-- the as_of day.
--
-- - The order's own fields are on its first row only: MAX and MIN over its rows take them
--   whichever row holds them (MIN for the time, in case an export repeats it).
-- - customer_id: the export names the customer by email only. An order whose email is no
--   customer's (a guest checkout, or a customer since deleted) has none: it counts for no
--   one, and the run record counts it (`unmatched`, under orders).
-- - status: an order with `Cancelled at` set is 'cancelled'. 'paid' and 'partially_refunded'
--   are 'paid' (paid_orders subtracts `Refunded Amount`); every other financial status
--   ('pending', 'authorized', 'partially_paid', 'refunded', 'voided') keeps its name, and
--   paid_orders counts none of them.
-- - The export has no test flag: orders placed with the bogus gateway count unless you
--   leave them out here (by `Payment Method`, say).
-- - Orders placed after the as_of day are not known yet: an export taken later holds them.
WITH grouped AS (
    SELECT "Name" AS name,
           MAX("Id") AS order_id,
           MAX(LOWER(TRIM("Email"))) AS email,
           MAX("Financial Status") AS financial_status,
           MAX("Currency") AS currency,
           MAX("Total") AS total_amount,
           MAX("Refunded Amount") AS refunded_amount,
           MIN("Created at") AS ordered_at,
           MAX("Cancelled at") AS cancelled_at,
           MAX("Source") AS channel
    FROM shopify_orders
    GROUP BY "Name"
)
SELECT o.order_id,
       c.customer_id,
       o.ordered_at,
       o.total_amount,
       o.currency,
       CASE WHEN o.cancelled_at IS NOT NULL THEN 'cancelled'
            WHEN o.financial_status IN ('paid', 'partially_refunded') THEN 'paid'
            ELSE o.financial_status END AS status,
       COALESCE(o.refunded_amount, CAST(0 AS DECIMAL(12, 2))) AS refunded_amount,
       o.channel
FROM grouped o
LEFT JOIN customers c ON c.email = o.email
WHERE o.ordered_at < $as_of_end

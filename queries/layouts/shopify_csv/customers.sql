-- customers: Shopify's customers export as the segment library's customers table.
--
-- - customer_id: `Customer ID`, without the leading apostrophe some exports write to keep
--   spreadsheets from rounding it.
-- - email is lower-cased and trimmed: orders find their customer by it (orders.sql).
-- - Consent: `Accepts Email Marketing` and `Accepts SMS Marketing` are 'yes' or 'no'.
-- - created_at: the export has no sign-up date. NULL counts as known (members), so every
--   customer of the export is a member; new_customers and the RFM groups read first
--   orders, not sign-up. (A NULL of $as_of_end's type: a timestamp shown in the pipeline's
--   zone, as every other.)
-- - Tags are one comma-separated string, as Shopify stores them, split into a list.
SELECT CAST(ltrim(TRIM("Customer ID"), '''') AS BIGINT) AS customer_id,
       NULLIF(LOWER(TRIM("Email")), '') AS email,
       NULLIF(ltrim(TRIM("Phone"), ''''), '') AS phone,
       CASE WHEN false THEN $as_of_end END AS created_at,
       NULLIF(TRIM("Default Address Country Code"), '') AS country,
       COALESCE(LOWER(TRIM("Accepts Email Marketing")) = 'yes', false) AS email_subscribed,
       COALESCE(LOWER(TRIM("Accepts SMS Marketing")) = 'yes', false) AS sms_subscribed,
       CASE WHEN TRIM(COALESCE("Tags", '')) = '' THEN CAST(make_array() AS VARCHAR[])
            ELSE string_to_array("Tags", ', ') END AS tags
FROM shopify_customers

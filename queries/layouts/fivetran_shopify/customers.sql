-- customers: Fivetran's CUSTOMER table as the segment library's customers table, with the
-- country of each customer's default address (CUSTOMER_ADDRESS) and their tags
-- (CUSTOMER_TAG, one row per tag; sorted by name here).
--
-- - Deleted customers (_fivetran_deleted) are left out: they are no one's members.
-- - Consent: `email_marketing_consent_state` is 'SUBSCRIBED' in the GraphQL-era schema
--   ('subscribed' in the REST-era one): only that is subscribed. The connector's customer
--   table has no SMS consent, so sms_subscribed is false.
SELECT c.id AS customer_id,
       NULLIF(TRIM(c.email), '') AS email,
       NULLIF(TRIM(c.phone), '') AS phone,
       c.created_at,
       a.country,
       COALESCE(UPPER(c.email_marketing_consent_state) = 'SUBSCRIBED', false) AS email_subscribed,
       false AS sms_subscribed,
       COALESCE(t.tags, CAST(make_array() AS VARCHAR[])) AS tags
FROM fivetran_customer c
LEFT JOIN (
    SELECT customer_id, MAX(country_code) AS country
    FROM fivetran_customer_address
    WHERE is_default
    GROUP BY customer_id
) a ON a.customer_id = c.id
LEFT JOIN (
    SELECT customer_id, array_sort(array_agg(value)) AS tags
    FROM fivetran_customer_tag
    GROUP BY customer_id
) t ON t.customer_id = c.id
WHERE NOT COALESCE(c._fivetran_deleted, false)

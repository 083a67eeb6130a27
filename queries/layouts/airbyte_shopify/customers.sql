-- customers: Airbyte's `customers` stream as the segment library's customers table, one row
-- per customer as it stood at the end of the night (the source's key and version pick the
-- row in force).
--
-- Marketing consent: Shopify's `email_marketing_consent.state` ('subscribed', 'not_subscribed',
-- 'pending', 'unsubscribed', 'redacted', 'invalid'); only 'subscribed' is subscribed. Older
-- syncs lack the object and carry the legacy `accepts_marketing` flag, read in its place.
-- The country is the default address's ISO code; tags are one comma-separated string, as
-- Shopify stores them, split into a list.
SELECT id AS customer_id,
       NULLIF(TRIM(email), '') AS email,
       NULLIF(TRIM(phone), '') AS phone,
       created_at,
       default_address['country_code'] AS country,
       COALESCE(email_marketing_consent['state'] = 'subscribed', accepts_marketing, false)
           AS email_subscribed,
       COALESCE(sms_marketing_consent['state'] = 'subscribed', false) AS sms_subscribed,
       CASE WHEN TRIM(COALESCE(tags, '')) = '' THEN CAST(make_array() AS VARCHAR[])
            ELSE string_to_array(tags, ', ') END AS tags,
       updated_at
FROM airbyte_customers

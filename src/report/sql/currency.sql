-- The shop's currency when customer_profile names one and only one.
SELECT MIN(CAST(currency AS VARCHAR)) AS currency,
       COUNT(DISTINCT currency) AS currencies
FROM customer_profile

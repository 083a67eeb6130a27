-- The shop's currency when every row of customer_profile names the same one.
SELECT MIN(CAST(currency AS VARCHAR)) AS currency,
       CASE WHEN COUNT(currency) = COUNT(*) THEN COUNT(DISTINCT currency) END AS currencies
FROM customer_profile

-- Every value of a label column of customer_profile, with its customers and their net
-- revenue, largest first. $label is filled in by the report.
SELECT CAST($label AS VARCHAR) AS label,
       COUNT(*) AS customers,
       CAST(COALESCE(SUM(net_revenue), 0) AS DOUBLE) AS revenue
FROM customer_profile
GROUP BY 1
ORDER BY customers DESC, label

-- One cell of a score grid per (down, across) score pair: the buyers in it, their net
-- revenue, and the label the cell's customers carry (NULL where they carry more than one,
-- or some carry none).
-- $down, $across and $label are column names of customer_profile, filled in by the report.
SELECT CAST($down AS BIGINT) AS down,
       CAST($across AS BIGINT) AS across,
       COUNT(*) AS customers,
       CAST(COALESCE(SUM(net_revenue), 0) AS DOUBLE) AS revenue,
       CASE WHEN COUNT(DISTINCT $label) = 1 AND COUNT($label) = COUNT(*) THEN MIN($label) END AS label
FROM customer_profile
WHERE $down IS NOT NULL AND $across IS NOT NULL
GROUP BY 1, 2

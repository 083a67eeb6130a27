-- rfm_cutpoints: how this run's scores were cut, so that any customer's score can be
-- explained: per metric and score, the scoring method and the lowest and highest value
-- that received that score, with the number of customers.
SELECT MIN(method) AS method, 'recency_days' AS metric, r_score AS score,
       CAST(MIN(recency_days) AS DECIMAL(14, 2)) AS min_value,
       CAST(MAX(recency_days) AS DECIMAL(14, 2)) AS max_value,
       COUNT(*) AS customers
FROM rfm GROUP BY r_score
UNION ALL
SELECT MIN(method), 'frequency', f_score,
       CAST(MIN(frequency) AS DECIMAL(14, 2)), CAST(MAX(frequency) AS DECIMAL(14, 2)), COUNT(*)
FROM rfm GROUP BY f_score
UNION ALL
SELECT MIN(method), 'monetary', m_score,
       CAST(MIN(monetary) AS DECIMAL(14, 2)), CAST(MAX(monetary) AS DECIMAL(14, 2)), COUNT(*)
FROM rfm GROUP BY m_score

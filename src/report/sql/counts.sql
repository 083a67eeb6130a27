-- The rows of $table by the value of $column (NULL included), most first. Both are names
-- the report fills in: the win-back list by R-F group, the left-out by why, the buyers by
-- churn risk.
SELECT CAST($column AS VARCHAR) AS value, COUNT(*) AS customers
FROM $table
GROUP BY 1
ORDER BY customers DESC, value

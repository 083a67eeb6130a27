-- rfm (method: quintiles): recency, frequency and monetary scores from 1 to 5 (5 best) for
-- every customer with at least one paid order as of $as_of. Customers without one are
-- prospects and get no score.
--
-- recency_days: days from the last paid order to as_of; frequency: paid orders;
-- monetary: net revenue after refunds.
--
-- Each score is ceil(5 * k / n), where n counts all buyers and k is the value's rank from
-- the worst (1 + the buyers with a strictly worse value). Equal values therefore always get
-- equal scores, the score of where their tie group starts: most customers buy once, and
-- splitting them by row number (NTILE) would score identical customers differently, while
-- here every one-time buyer gets f_score 1. Integer arithmetic keeps the cuts exact.
-- Where most buyers buy once, this leaves f_score 2 and 3 empty (one-time buyers tie at 1,
-- two-order buyers start high); the default rfm.sql scores F by order counts for that reason.
-- For fixed thresholds on all three, point the rfm step at rfm_thresholds.sql.
-- k comes from the buyers counted per distinct value, so that only the values are put in
-- order: RANK() over every buyer sorts them all on one core. Counts are BIGINT, so that
-- ceil(5k/n) is integer arithmetic (RANK() is unsigned, and mixed with a signed count
-- DataFusion computes in decimals, where a filter on the score cast to INT was rewritten
-- wrongly: apache/datafusion#23095).
WITH buyers AS (
    SELECT customer_id,
           days_since_last_order AS recency_days,
           paid_orders AS frequency,
           net_revenue AS monetary
    FROM customer_features
    WHERE paid_orders > 0
),
recency_ranks AS (
    SELECT recency_days,
           SUM(buyers_with_it) OVER (ORDER BY recency_days DESC) - buyers_with_it + 1 AS k
    FROM (SELECT recency_days, COUNT(*) AS buyers_with_it FROM buyers GROUP BY recency_days) AS counted
),
frequency_ranks AS (
    SELECT frequency,
           SUM(buyers_with_it) OVER (ORDER BY frequency) - buyers_with_it + 1 AS k
    FROM (SELECT frequency, COUNT(*) AS buyers_with_it FROM buyers GROUP BY frequency) AS counted
),
monetary_ranks AS (
    SELECT monetary,
           SUM(buyers_with_it) OVER (ORDER BY monetary) - buyers_with_it + 1 AS k
    FROM (SELECT monetary, COUNT(*) AS buyers_with_it FROM buyers GROUP BY monetary) AS counted
),
total AS (
    SELECT COUNT(*) AS buyers FROM buyers
)
SELECT b.customer_id,
       'quintiles' AS method,
       b.recency_days,
       b.frequency,
       b.monetary,
       CAST((5 * r.k + t.buyers - 1) / t.buyers AS INT) AS r_score,
       CAST((5 * f.k + t.buyers - 1) / t.buyers AS INT) AS f_score,
       CAST((5 * m.k + t.buyers - 1) / t.buyers AS INT) AS m_score
FROM total t
CROSS JOIN buyers b
JOIN recency_ranks r ON r.recency_days = b.recency_days
JOIN frequency_ranks f ON f.frequency = b.frequency
JOIN monetary_ranks m ON m.monetary = b.monetary

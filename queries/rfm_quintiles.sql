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
-- Ranks are cast to BIGINT so that ceil(5k/n) is integer arithmetic: RANK() is unsigned,
-- and mixed with the signed count DataFusion computes in decimals, where a filter on the
-- score cast to INT is rewritten wrongly (apache/datafusion#23095: `WHERE r_score = 5`
-- read no rows when this step was not materialised).
WITH buyers AS (
    SELECT customer_id,
           days_since_last_order AS recency_days,
           paid_orders AS frequency,
           net_revenue AS monetary,
           COUNT(*) OVER () AS buyers
    FROM customer_features
    WHERE paid_orders > 0
)
SELECT customer_id,
       'quintiles' AS method,
       recency_days,
       frequency,
       monetary,
       CAST((5 * CAST(RANK() OVER (ORDER BY recency_days DESC) AS BIGINT) + buyers - 1) / buyers AS INT) AS r_score,
       CAST((5 * CAST(RANK() OVER (ORDER BY frequency) AS BIGINT) + buyers - 1) / buyers AS INT) AS f_score,
       CAST((5 * CAST(RANK() OVER (ORDER BY monetary) AS BIGINT) + buyers - 1) / buyers AS INT) AS m_score
FROM buyers

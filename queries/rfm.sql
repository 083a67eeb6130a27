-- rfm (method: rm_quintiles_f_orders, the default): recency, frequency and monetary scores
-- from 1 to 5 (5 best) for every customer with at least one paid order as of $as_of.
-- Customers without one are prospects and get no score.
--
-- recency_days: days from the last paid order to as_of; frequency: paid orders;
-- monetary: net revenue after refunds.
--
-- r_score and m_score are quintiles: ceil(5 * k / n), where n counts all buyers and k is the
-- value's rank from the worst (1 + the buyers with a strictly worse value), so equal values
-- always get equal scores. f_score counts orders against the thresholds $rfm_f2_orders ..
-- $rfm_f5_orders (by default 2, 3, 4, 5: one order scores 1, five or more score 5). Quintiles
-- of frequency would not work where most buyers buy once: all one-time buyers tie at F 1 and
-- the two-order buyers jump to F 4, so F 2 and 3, and with them Potential Loyalist and Need
-- Attention, would stay empty. rfm_quintiles.sql scores F by quintiles too; rfm_thresholds.sql
-- scores all three by thresholds.
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
       'rm_quintiles_f_orders' AS method,
       recency_days,
       frequency,
       monetary,
       CAST((5 * CAST(RANK() OVER (ORDER BY recency_days DESC) AS BIGINT) + buyers - 1) / buyers AS INT) AS r_score,
       CAST(CASE WHEN frequency >= $rfm_f5_orders THEN 5
                 WHEN frequency >= $rfm_f4_orders THEN 4
                 WHEN frequency >= $rfm_f3_orders THEN 3
                 WHEN frequency >= $rfm_f2_orders THEN 2
                 ELSE 1 END AS INT) AS f_score,
       CAST((5 * CAST(RANK() OVER (ORDER BY monetary) AS BIGINT) + buyers - 1) / buyers AS INT) AS m_score
FROM buyers

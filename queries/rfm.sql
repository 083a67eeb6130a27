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
monetary_ranks AS (
    SELECT monetary,
           SUM(buyers_with_it) OVER (ORDER BY monetary) - buyers_with_it + 1 AS k
    FROM (SELECT monetary, COUNT(*) AS buyers_with_it FROM buyers GROUP BY monetary) AS counted
),
total AS (
    SELECT COUNT(*) AS buyers FROM buyers
)
SELECT b.customer_id,
       'rm_quintiles_f_orders' AS method,
       b.recency_days,
       b.frequency,
       b.monetary,
       CAST((5 * r.k + t.buyers - 1) / t.buyers AS INT) AS r_score,
       CAST(CASE WHEN b.frequency >= $rfm_f5_orders THEN 5
                 WHEN b.frequency >= $rfm_f4_orders THEN 4
                 WHEN b.frequency >= $rfm_f3_orders THEN 3
                 WHEN b.frequency >= $rfm_f2_orders THEN 2
                 ELSE 1 END AS INT) AS f_score,
       CAST((5 * m.k + t.buyers - 1) / t.buyers AS INT) AS m_score
FROM total t
CROSS JOIN buyers b
JOIN recency_ranks r ON r.recency_days = b.recency_days
JOIN monetary_ranks m ON m.monetary = b.monetary

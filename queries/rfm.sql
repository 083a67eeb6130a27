-- rfm: recency, frequency and monetary scores from 1 to 5 (5 best) for every customer with
-- at least one paid order as of $as_of. Customers without one are prospects and get no score.
--
-- recency_days: days from the last paid order to as_of; frequency: paid orders;
-- monetary: net revenue after refunds.
--
-- Each score is the quintile of the value's cumulative distribution, ceil(5 * k / n), where
-- k counts the buyers whose value is as good or worse (ties included) and n counts all
-- buyers. Equal values therefore always get equal scores: most customers buy once, and
-- splitting them by row number (NTILE) would score identical customers differently.
-- Integer arithmetic keeps the cut exact where floating-point CUME_DIST() could round.
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
       recency_days,
       frequency,
       monetary,
       CAST((5 * COUNT(*) OVER (ORDER BY recency_days DESC) + buyers - 1) / buyers AS INT) AS r_score,
       CAST((5 * COUNT(*) OVER (ORDER BY frequency) + buyers - 1) / buyers AS INT) AS f_score,
       CAST((5 * COUNT(*) OVER (ORDER BY monetary) + buyers - 1) / buyers AS INT) AS m_score
FROM buyers

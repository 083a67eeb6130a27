-- The win-back list's size against the previous publication. The list itself shrinks after
-- every campaign night (the cooldown moves its customers to winback_suppressed), so what is
-- compared is everyone who qualified: listed plus suppressed. A row here (the check fails)
-- when that count moved by more than winback_max_change (a share) of the previous one, and
-- either count is at least winback_min_candidates: missing orders or a doubled export, far
-- more often than a real change overnight. With no candidates before (the first
-- publication, or an empty night) there is nothing to compare: no row.
WITH tonight AS (
    SELECT (SELECT COUNT(*) FROM winback_list) + (SELECT COUNT(*) FROM winback_suppressed) AS candidates
),
before AS (
    SELECT (SELECT COUNT(*) FROM previous_winback_list) +
           (SELECT COUNT(*) FROM previous_winback_suppressed) AS candidates
)
SELECT before.candidates AS previous_candidates,
       tonight.candidates AS candidates
FROM tonight CROSS JOIN before
WHERE before.candidates > 0
  AND GREATEST(before.candidates, tonight.candidates) >= $winback_min_candidates
  AND ABS(tonight.candidates - before.candidates) > CAST($winback_max_change AS DOUBLE) * before.candidates

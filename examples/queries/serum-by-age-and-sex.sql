-- Serum with consent for genetic analyses, by age band and sex.
SELECT age_band, sex, COUNT(DISTINCT donor_id) AS donors
FROM samples
WHERE sample_type = 'Serum' AND consent_genetic = true
GROUP BY age_band, sex

-- Samples of donors whose primary diagnosis is a hip fracture, by year.
SELECT sampling_year, COUNT(*) AS samples
FROM samples
WHERE diagnosis IN ('S72.0', 'S72.1', 'S72.2') AND sampling_year >= 2015
GROUP BY sampling_year

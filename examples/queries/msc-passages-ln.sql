-- Culture-expanded MSC at early passages in liquid nitrogen, by storage
-- phase, with the vials available.
SELECT storage_temperature, COUNT(DISTINCT donor_id) AS donors, COUNT(*) AS samples,
       SUM(aliquots_available) AS vials
FROM samples
WHERE material_subtype = 'msc_culture' AND passage_number <= 2
  AND storage_temperature IN ('LN_vapour', 'LN_liquid')
GROUP BY storage_temperature

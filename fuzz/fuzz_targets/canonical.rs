//! Queries built from the fuzzer's bytes over a small vocabulary (so that
//! columns and values repeat and canonicalisation has work to do): a query
//! and its canonical form keep the same rows, under SQL's three-valued
//! logic, for every row tried; the canonical form is stable; and its SQL
//! parses back to it.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(query) = bonebank_fuzz::query(&mut u) else {
        return;
    };
    let canonical = query.canonical();
    // An exhausted Unstructured keeps answering with default values, so
    // stop when the bytes run out (and after a bounded number of rows).
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        let Ok(row) = bonebank_fuzz::row(&mut u) else {
            break;
        };
        assert_eq!(
            bonebank_fuzz::keeps(&query.filter, &row),
            bonebank_fuzz::keeps(&canonical.filter, &row),
            "{query:?} and its canonical form {canonical:?} differ on {row:?}"
        );
    }
    bonebank_fuzz::assert_canonical_round_trip(&query);
});

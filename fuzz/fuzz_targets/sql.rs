//! Any text as SQL: the front end answers with a query or a refusal, never
//! a panic or a hang (libFuzzer's -timeout catches slow inputs), and every
//! query it accepts is within the limits and survives its canonical round
//! trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(query) = bonebank_query::sql::parse(text) {
        bonebank_query::limits::check_query(&query).expect("a parsed query is within the limits");
        bonebank_fuzz::assert_canonical_round_trip(&query);
    }
});

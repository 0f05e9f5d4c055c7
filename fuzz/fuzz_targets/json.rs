//! Any bytes as a JSON query request: read, held to the limits, and a query
//! within them canonicalises and renders without a panic, to a canonical
//! form that is stable.
#![no_main]

use bonebank_schemas::wire::QueryRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<QueryRequest>(data) else {
        return;
    };
    if let Some(sql) = &request.sql {
        let _ = bonebank_query::sql::parse(sql);
    }
    if let Some(query) = &request.query
        && bonebank_query::limits::check_query(query).is_ok()
    {
        let canonical = query.canonical();
        assert_eq!(canonical.canonical(), canonical, "canonical form is stable");
        let _ = canonical.to_sql();
        let _ = canonical.canonical_json();
    }
});

//! A GA4GH Beacon v2 count endpoint for biosamples and individuals, under
//! `/beacon/v2`: the framework's informational endpoints, and queries with
//! AND-ed ontology and alphanumeric filters answered at `count` granularity
//! only. A count is bonebank's noisy total over the sites, asked as any
//! question is (the caller's token, their budget at each site, the sites'
//! rules), and the response says that it is differentially private.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use bonebank_schemas::ValueSet;
use bonebank_schemas::icd10_titles;
use bonebank_schemas::wire::{FederatedRequest, SiteStatus};
use bonebank_schemas::{
    FeasibilityQuery, Filter, Icd10, Measure, SampleType, StorageTemperature, Value as Cell,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::State;
use crate::{Error, Result};

const API_VERSION: &str = "v2.0.0";
const BEACON_ID: &str = "org.bonebank.beacon";

/// Sex as Beacon filters name it (NCIT), and as bonebank records it.
const SEXES: [(&str, &str, &str); 3] = [
    ("NCIT:C16576", "female", "Female"),
    ("NCIT:C20197", "male", "Male"),
    ("NCIT:C17998", "unknown", "Unknown"),
];

/// The two entry types: what a count counts.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Individuals,
    Biosamples,
}

impl Entry {
    fn measure(self) -> Measure {
        match self {
            Self::Individuals => Measure::Donors,
            Self::Biosamples => Measure::Samples,
        }
    }

    fn entity(self) -> &'static str {
        match self {
            Self::Individuals => "individual",
            Self::Biosamples => "biosample",
        }
    }

    fn schema(self) -> Value {
        let name = match self {
            Self::Individuals => "beacon-individual-v2.0.0",
            Self::Biosamples => "beacon-biosample-v2.0.0",
        };
        json!({"entityType": self.entity(), "schema": name})
    }
}

fn meta(returned: &[Entry]) -> Value {
    json!({
        "beaconId": BEACON_ID,
        "apiVersion": API_VERSION,
        "returnedSchemas": returned.iter().map(|e| e.schema()).collect::<Vec<_>>(),
    })
}

fn base(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}/beacon/v2", info.scheme(), info.host())
}

fn info_response() -> Value {
    json!({
        "id": BEACON_ID,
        "name": "bonebank feasibility network",
        "apiVersion": API_VERSION,
        "environment": "prod",
        "organization": {"id": "bonebank", "name": "bonebank"},
        "description": "Counts of biosamples and individuals across the network's biobanks in Germany and Denmark. \
            Every count is differentially private: the sites add noise, and the total is the sum of their noisy counts.",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /beacon/v2`.
#[utoipa::path(tag = "beacon", responses((status = 200, description = "As /beacon/v2/info.", body = Object)))]
#[get("")]
pub async fn root() -> HttpResponse {
    info_body()
}

/// `GET /beacon/v2/`.
#[utoipa::path(tag = "beacon", responses((status = 200, description = "As /beacon/v2/info.", body = Object)))]
#[get("/")]
pub async fn root_slash() -> HttpResponse {
    info_body()
}

/// `GET /beacon/v2/info`.
#[utoipa::path(tag = "beacon", responses((status = 200, description = "The beacon's information response, in the beaconInfoResponse schema (validated against the framework's JSON schemas in the tests).", body = Object)))]
#[get("/info")]
pub async fn info_endpoint() -> HttpResponse {
    info_body()
}

fn info_body() -> HttpResponse {
    HttpResponse::Ok().json(json!({"meta": meta(&[]), "response": info_response()}))
}

/// `GET /beacon/v2/service-info`: GA4GH service-info.
#[utoipa::path(tag = "beacon", responses((status = 200, description = "GA4GH service-info for the beacon.", body = Object)))]
#[get("/service-info")]
pub async fn service_info() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "id": BEACON_ID,
        "name": "bonebank feasibility network",
        "type": {"group": "org.ga4gh", "artifact": "beacon", "version": API_VERSION},
        "description": "Differentially private counts of biosamples and individuals.",
        "organization": {"name": "bonebank", "url": "https://example.invalid/bonebank"},
        "version": env!("CARGO_PKG_VERSION"),
        "environment": "prod",
    }))
}

fn entry_types() -> Value {
    let one = |id: &str, name: &str, description: &str, term: &str, label: &str| {
        json!({
            "id": id,
            "name": name,
            "description": description,
            "ontologyTermForThisType": {"id": term, "label": label},
            "partOfSpecification": "Beacon v2.0.0",
            "defaultSchema": {"id": format!("beacon-{id}-v2.0.0"), "name": format!("Default schema for {name}"), "referenceToSchemaDefinition": "https://github.com/ga4gh-beacon/beacon-v2", "schemaVersion": API_VERSION},
        })
    };
    json!({
        "individual": one("individual", "Individual", "A donor of samples", "NCIT:C25190", "Person"),
        "biosample": one("biosample", "Biosample", "A sample held by a biobank", "NCIT:C70699", "Biospecimen"),
    })
}

/// `GET /beacon/v2/configuration`.
#[utoipa::path(tag = "beacon", responses((status = 200, description = "The beacon's configuration: count granularity, the entry types (Beacon v2 beaconConfigurationResponse).", body = Object)))]
#[get("/configuration")]
pub async fn configuration() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "meta": meta(&[]),
        "response": {
            "$schema": "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/framework/json/configuration/beaconConfigurationSchema.json",
            "maturityAttributes": {"productionStatus": "PROD"},
            "securityAttributes": {"defaultGranularity": "count", "securityLevels": ["REGISTERED"]},
            "entryTypes": entry_types(),
        },
    }))
}

/// `GET /beacon/v2/entry_types`.
#[utoipa::path(tag = "beacon", responses((status = 200, description = "Individuals and biosamples (Beacon v2 beaconEntryTypesResponse).", body = Object)))]
#[get("/entry_types")]
pub async fn entry_types_endpoint() -> HttpResponse {
    HttpResponse::Ok().json(json!({"meta": meta(&[]), "response": {"entryTypes": entry_types()}}))
}

/// `GET /beacon/v2/map`.
#[utoipa::path(tag = "beacon", responses((status = 200, description = "Where each entry type is asked (Beacon v2 beaconMapResponse).", body = Object)))]
#[get("/map")]
pub async fn map(req: HttpRequest) -> HttpResponse {
    let base = base(&req);
    HttpResponse::Ok().json(json!({
        "meta": meta(&[]),
        "response": {
            "$schema": "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/framework/json/configuration/beaconMapSchema.json",
            "endpointSets": {
                "individual": {"entryType": "individual", "rootUrl": format!("{base}/individuals")},
                "biosample": {"entryType": "biosample", "rootUrl": format!("{base}/biosamples")},
            },
        },
    }))
}

/// Every value a filter can name: ICD-10 codes, sex, sample type and
/// storage temperature as CURIEs, and the age at sampling.
fn filtering_terms() -> Vec<Value> {
    let mut terms: Vec<Value> = icd10_titles::translated()
        .map(|c| {
            json!({"type": "ontology", "id": format!("ICD10:{}", c.code), "label": c.en.unwrap_or_default(), "scopes": ["individual", "biosample"]})
        })
        .collect();
    terms.extend(SEXES.iter().map(|(id, label, _)| {
        json!({"type": "ontology", "id": id, "label": label, "scopes": ["individual", "biosample"]})
    }));
    terms.extend(SampleType::ALL.iter().map(|t| {
        json!({"type": "custom", "id": format!("sample_type:{}", t.code()), "label": format!("sample type {}", t.code()), "scopes": ["individual", "biosample"]})
    }));
    terms.extend(StorageTemperature::ALL.iter().map(|t| {
        json!({"type": "custom", "id": format!("storage_temperature:{}", t.code()), "label": format!("storage temperature {}", t.code()), "scopes": ["individual", "biosample"]})
    }));
    terms.push(json!({"type": "alphanumeric", "id": "age_at_sampling", "label": "age at sampling in years (=, <, <=, >, >=)", "scopes": ["individual", "biosample"]}));
    terms
}

/// `GET /beacon/v2/filtering_terms`.
#[utoipa::path(tag = "beacon", responses((status = 200, description = "Every value a filter can name, as CURIEs: ICD-10, sex, sample type, storage temperature, and age at sampling (Beacon v2 beaconFilteringTermsResponse).", body = Object)))]
#[get("/filtering_terms")]
pub async fn filtering_terms_endpoint() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "meta": meta(&[]),
        "response": {
            "filteringTerms": filtering_terms(),
            "resources": [
                {"id": "ICD10", "name": "International Classification of Diseases, 10th revision", "url": "https://icd.who.int/browse10", "nameSpacePrefix": "ICD10", "iriPrefix": "https://icd.who.int/browse10/2019/en#/"},
                {"id": "NCIT", "name": "NCI Thesaurus", "url": "https://ncit.nci.nih.gov", "nameSpacePrefix": "NCIT", "iriPrefix": "http://purl.obolibrary.org/obo/NCIT_"},
            ],
        },
    }))
}

/// What a count endpoint answers.
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built
enum CountResponses {
    /// The count, in the Beacon v2 beaconCountResponse shape: the noisy
    /// total of the sites that answered, its 95% interval, and which sites
    /// are missing.
    #[response(status = 200)]
    Count(Value),
    /// A Beacon v2 beaconErrorResponse: 400 for a body that is not a
    /// Beacon request (not JSON, a field or filter key not understood, no
    /// body on a POST) or a filter that is not understood, 401 without a
    /// signed-in caller, 403 for a session's request without its CSRF
    /// token (a GET's too: every count is charged) or when every site
    /// refused the question, 409 when sites wait for a steward's approval
    /// and none answered, 429 when the caller's budget is spent at every
    /// site.
    #[response(status = "4XX")]
    Refused(Value),
    /// A Beacon v2 beaconErrorResponse: the identity provider could not
    /// be reached, or no site could answer (unreachable, timed out,
    /// failed; there is then no count, and the message says each site's
    /// status).
    #[response(status = 503)]
    Unavailable(Value),
}

/// The HTTP status of a count no site gave, from the sites' statuses. The
/// caller's own doing (their budget, the sites' policies, a steward's
/// approval to wait for) is theirs to hear as such; only sites that could
/// not answer at all make it the service's (503).
fn no_count_status(sites: &[SiteStatus]) -> u16 {
    use SiteStatus as S;
    let every = |want: &[S]| sites.iter().all(|s| want.contains(s));
    if sites.is_empty() {
        503
    } else if every(&[S::BudgetExhausted]) {
        429
    } else if every(&[S::Refused, S::BudgetExhausted]) {
        403
    } else if every(&[S::WaitingForApproval, S::Refused, S::BudgetExhausted]) {
        409
    } else {
        503
    }
}

/// A Beacon request, as far as bonebank reads it. Anything it does not know
/// is refused rather than ignored: a misspelt `filterz` ignored would count
/// everyone, and be charged for it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeaconRequest {
    /// The requester's `apiVersion` and `requestedSchemas`, echoed in the
    /// answer's summary.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    meta: Value,
    #[serde(default)]
    query: BeaconQuery,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BeaconQuery {
    /// Conditions, all of which a counted sample meets.
    #[serde(default)]
    #[schema(schema_with = filters_schema)]
    filters: Vec<Value>,
    #[serde(default)]
    requested_granularity: Option<String>,
    /// Request parameters (variant queries) are not answered here: only
    /// none (`null` or `{}`) are taken.
    #[serde(default)]
    #[schema(schema_with = no_request_parameters)]
    request_parameters: Option<Value>,
    /// Read (checked as Beacon's `skip` and `limit`) and ignored: a count
    /// has no pages.
    #[serde(default)]
    #[schema(schema_with = pagination_schema)]
    #[allow(dead_code)]
    pagination: Option<Value>,
    /// Read and ignored: a count has no result sets.
    #[serde(default)]
    #[allow(dead_code)]
    include_resultset_responses: Option<String>,
    /// A test-mode request is refused: every count here is real, and charged.
    #[serde(default)]
    #[schema(schema_with = no_test_mode)]
    test_mode: Option<bool>,
}

fn pagination_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    schema_of(json!({
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {
            "skip": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 0},
        },
    }))
}

/// A JSON number that is a whole number (JSON Schema's `integer` takes
/// `29.0` as well as `29`).
fn whole(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// A schema written out as JSON: what the derived ones cannot say.
fn schema_of(value: Value) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    serde_json::from_value(value).expect("a valid schema")
}

fn no_request_parameters() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    schema_of(json!({"type": ["object", "null"], "maxProperties": 0}))
}

fn no_test_mode() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    schema_of(json!({"type": ["boolean", "null"], "enum": [false, null]}))
}

/// The ids `condition` reads, as a pattern: an ICD-10 code or category as
/// `/filtering_terms` writes it (`ICD10:S72`, `ICD10:S72.1`).
const ICD10_ID: &str = "^ICD10:[A-Z][0-9]{2}(\\.[0-9])?$";

/// The two kinds of filter `condition` reads, exactly.
fn filters_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let mut ids: Vec<String> = SEXES.iter().map(|(id, _, _)| (*id).to_owned()).collect();
    ids.extend(
        SampleType::ALL
            .iter()
            .map(|t| format!("sample_type:{}", t.code())),
    );
    ids.extend(
        StorageTemperature::ALL
            .iter()
            .map(|t| format!("storage_temperature:{}", t.code())),
    );
    let scope = json!({"type": "string"});
    schema_of(json!({
        "type": "array",
        "items": {"oneOf": [
            {
                "type": "object",
                "description": "An ontology or custom term from /beacon/v2/filtering_terms.",
                "required": ["id"],
                "additionalProperties": false,
                "properties": {
                    "id": {"oneOf": [
                        {"type": "string", "enum": ids},
                        {"type": "string", "pattern": ICD10_ID},
                    ]},
                    "includeDescendantTerms": {"type": "boolean"},
                    "similarity": {"type": "string"},
                    "scope": scope,
                },
            },
            {
                "type": "object",
                "description": "The age at sampling in whole years compared with a value.",
                "required": ["id", "operator", "value"],
                "additionalProperties": false,
                "properties": {
                    "id": {"type": "string", "enum": ["age_at_sampling"]},
                    "operator": {"type": "string", "enum": ["=", "<", "<=", ">", ">="]},
                    "value": {"oneOf": [
                        {"type": "integer", "minimum": 0, "maximum": MAX_AGE},
                        {"type": "string", "pattern": "^(0|[1-9][0-9]?|1[0-4][0-9]|150)$"},
                    ]},
                    "scope": scope,
                },
            },
        ]},
    }))
}

/// The oldest age a Beacon filter names.
const MAX_AGE: i64 = 150;

impl BeaconRequest {
    /// A request from a POST body: JSON of the shape above, nothing else.
    fn parse(body: &[u8]) -> Result<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::BadRequest(
                "a POST needs a Beacon request in its body (JSON, e.g. {\"query\": {\"filters\": []}}); GET counts without filters".into(),
            ));
        }
        let not_beacon =
            |e: String| Error::BadRequest(format!("the body is not a Beacon request: {e}"));
        let value: Value = serde_json::from_slice(body).map_err(|e| not_beacon(e.to_string()))?;
        // serde takes a list for a struct too ([null, null] as pagination);
        // Beacon's sections are objects.
        for (at, section, nullable) in [
            ("the request", Some(&value), false),
            ("meta", value.get("meta"), true),
            ("query", value.get("query"), false),
            ("query.pagination", value.pointer("/query/pagination"), true),
        ] {
            if let Some(v) = section
                && !(v.is_object() || (nullable && v.is_null()))
            {
                return Err(not_beacon(format!("{at} must be a JSON object, not {v}")));
            }
        }
        if let Some(pages) = value
            .pointer("/query/pagination")
            .and_then(Value::as_object)
        {
            for (key, n) in pages {
                let fits = n.as_u64().is_some()
                    || n.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0);
                if !matches!(key.as_str(), "skip" | "limit") || !fits {
                    return Err(not_beacon(format!(
                        "pagination has skip and limit, whole numbers from 0, not {key}: {n}"
                    )));
                }
            }
        }
        let request: Self = serde_json::from_value(value).map_err(|e| not_beacon(e.to_string()))?;
        if request
            .query
            .request_parameters
            .as_ref()
            .is_some_and(|p| !(p.is_null() || p.as_object().is_some_and(|o| o.is_empty())))
        {
            return Err(Error::BadRequest(
                "requestParameters are not answered here; use filters (/beacon/v2/filtering_terms lists them)".into(),
            ));
        }
        if request.query.test_mode == Some(true) {
            return Err(Error::BadRequest(
                "testMode is not offered: every count here is real and charged".into(),
            ));
        }
        Ok(request)
    }
}

/// The keys of Beacon v2's two filter objects: a term, and a comparison.
const TERM_KEYS: [&str; 4] = ["id", "includeDescendantTerms", "similarity", "scope"];
const COMPARISON_KEYS: [&str; 4] = ["id", "operator", "value", "scope"];

/// A Beacon filter as a condition on samples. Its shape is checked as
/// `filters_schema` documents it: what the document refuses is refused.
fn condition(filter: &Value) -> Result<Filter> {
    let bad = |m: String| Error::BadRequest(m);
    let object = filter
        .as_object()
        .ok_or_else(|| bad(format!("a filter is an object with an id, not {filter}")))?;
    let comparison = object.contains_key("operator") || object.contains_key("value");
    let keys: &[&str] = if comparison {
        &COMPARISON_KEYS
    } else {
        &TERM_KEYS
    };
    if let Some(unknown) = object.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(bad(format!(
            "a filter's {unknown:?} is not understood; a {} has {}",
            if comparison {
                "comparison"
            } else {
                "term filter"
            },
            keys.join(", ")
        )));
    }
    for (key, is_type, kind) in [
        (
            "includeDescendantTerms",
            Value::is_boolean as fn(&Value) -> bool,
            "true or false",
        ),
        ("similarity", Value::is_string, "a string"),
        ("scope", Value::is_string, "a string"),
        ("operator", Value::is_string, "a string"),
    ] {
        if let Some(v) = object.get(key)
            && !is_type(v)
        {
            return Err(bad(format!("a filter's {key} is {kind}, not {v}")));
        }
    }
    let id = filter
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("a filter without an id: {filter}")))?;
    if comparison {
        let op = filter
            .get("operator")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(format!(
                    "a comparison needs an operator (=, <, <=, > or >=): {filter}"
                ))
            })?;
        if id != "age_at_sampling" {
            return Err(bad(format!(
                "alphanumeric filters are on age_at_sampling only, not {id:?}"
            )));
        }
        // A whole number of years, as a JSON number or digits in a string.
        let value = filter.get("value").and_then(|v| {
            whole(v).or_else(|| {
                v.as_str()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .filter(|s| s.len() == 1 || !s.starts_with('0'))
                    .and_then(|s| s.parse().ok())
            })
        });
        let n = value.filter(|n| (0..=MAX_AGE).contains(n)).ok_or_else(|| {
            bad(format!(
                "age_at_sampling needs a whole number of years from 0 to {MAX_AGE}, not {}",
                filter["value"]
            ))
        })?;
        let (min, max) = match op {
            "=" => (Some(n), Some(n)),
            ">" => (Some(n + 1), None),
            ">=" => (Some(n), None),
            "<" => (None, Some(n - 1)),
            "<=" => (None, Some(n)),
            other => return Err(bad(format!("operator {other:?}: use =, <, <=, > or >="))),
        };
        return Ok(Filter::Range {
            column: "age_at_sampling".into(),
            min,
            max,
        });
    }
    if let Some(code) = id.strip_prefix("ICD10:") {
        // As /filtering_terms writes them: S72 or S72.1.
        let b = code.as_bytes();
        let written = matches!(b.len(), 3 | 5)
            && b[0].is_ascii_uppercase()
            && b[1..3].iter().all(u8::is_ascii_digit)
            && (b.len() == 3 || (b[3] == b'.' && b[4].is_ascii_digit()));
        if !written {
            return Err(bad(format!(
                "{id}: an ICD-10 filter is a category or code as /beacon/v2/filtering_terms writes them, e.g. ICD10:S72 or ICD10:S72.1"
            )));
        }
        let code = Icd10::parse(code).map_err(|e| bad(format!("{id}: {e}")))?;
        let descendants = filter
            .get("includeDescendantTerms")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        return Ok(if descendants {
            Filter::Prefix {
                column: "diagnosis".into(),
                prefix: code.as_str().into(),
            }
        } else {
            Filter::In {
                column: "diagnosis".into(),
                values: vec![Cell::Text(code.as_str().into())],
            }
        });
    }
    let value_of = |column: &str, value: &str| Filter::In {
        column: column.into(),
        values: vec![Cell::Text(value.into())],
    };
    if let Some((_, _, sex)) = SEXES.iter().find(|(curie, _, _)| *curie == id) {
        return Ok(value_of("sex", sex));
    }
    if let Some(t) = id.strip_prefix("sample_type:") {
        t.parse::<SampleType>().map_err(|e| bad(e.to_string()))?;
        return Ok(value_of("sample_type", t));
    }
    if let Some(t) = id.strip_prefix("storage_temperature:") {
        t.parse::<StorageTemperature>()
            .map_err(|e| bad(e.to_string()))?;
        return Ok(value_of("storage_temperature", t));
    }
    Err(bad(format!(
        "unknown filtering term {id:?}; /beacon/v2/filtering_terms lists them"
    )))
}

/// The question a Beacon request asks: the entry type's count under every
/// filter (Beacon ANDs them).
fn question(entry: Entry, request: &BeaconRequest) -> Result<FeasibilityQuery> {
    let conditions = request
        .query
        .filters
        .iter()
        .map(condition)
        .collect::<Result<Vec<_>>>()?;
    Ok(FeasibilityQuery {
        measures: vec![entry.measure()],
        filter: match conditions.len() {
            0 => Filter::True,
            1 => conditions.into_iter().next().expect("one"),
            _ => Filter::And(conditions),
        },
        group_by: Vec::new(),
    })
}

/// The meta section of an answer to `request`.
fn response_meta(entry: Entry, request: &BeaconRequest) -> Value {
    let requested = request
        .query
        .requested_granularity
        .clone()
        .unwrap_or_else(|| "count".into());
    json!({
        "beaconId": BEACON_ID,
        "apiVersion": API_VERSION,
        "returnedGranularity": "count",
        "receivedRequestSummary": {
            "apiVersion": request.meta.get("apiVersion").cloned().unwrap_or(json!(API_VERSION)),
            "requestedSchemas": request.meta.get("requestedSchemas").cloned().unwrap_or(json!([])),
            // The summary names each filter by its id.
            "filters": request
                .query
                .filters
                .iter()
                .map(|f| f.get("id").and_then(Value::as_str).unwrap_or("").to_owned())
                .collect::<Vec<_>>(),
            "pagination": {"skip": 0, "limit": 0},
            "requestedGranularity": requested,
        },
        "returnedSchemas": [entry.schema()],
    })
}

fn beacon_error(entry: Entry, request: &BeaconRequest, status: u16, message: &str) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(code).json(json!({
        "meta": response_meta(entry, request),
        "error": {"errorCode": status, "errorMessage": message},
    }))
}

/// Where a count's request comes from.
#[derive(Debug, Clone, Copy)]
enum Body<'a> {
    /// A `GET`: no filters.
    None,
    /// A `POST`'s body, to be read as a Beacon request.
    Post(&'a [u8]),
}

async fn count(
    entry: Entry,
    state: web::Data<State>,
    req: HttpRequest,
    body: Body<'_>,
) -> HttpResponse {
    let request = match body {
        Body::None => BeaconRequest::default(),
        Body::Post(bytes) => match BeaconRequest::parse(bytes) {
            Ok(r) => r,
            Err(e) => return beacon_error(entry, &BeaconRequest::default(), 400, &e.to_string()),
        },
    };
    // Every count is charged at every site, a GET's too: a browser
    // session's request needs its CSRF token.
    let who = match state.auth.spender(&req).await {
        Ok(w) => w,
        Err(e) => {
            let body = bonebank_service::error::WireError::body(&e);
            return beacon_error(entry, &request, body.code.status(), &body.message);
        }
    };
    let query = match question(entry, &request) {
        Ok(q) => q,
        Err(e) => return beacon_error(entry, &request, 400, &e.to_string()),
    };
    let result = match state
        .coordinator
        .ask(
            &who,
            FederatedRequest {
                sql: None,
                query: Some(query),
                loss: None,
                sites: None,
                // Counts come from the sites' catalogues where they can:
                // free of any user's budget.
                fresh: false,
                purpose: None,
            },
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let body = bonebank_service::error::WireError::body(&e);
            return beacon_error(entry, &request, body.code.status(), &body.message);
        }
    };
    let total = result
        .total
        .first()
        .and_then(|row| row.values.first().cloned().flatten());
    // No site answered: there is no count, and zero would be a false one.
    let Some(total) = total else {
        let why: Vec<String> = result
            .sites
            .iter()
            .map(|s| format!("{}: {}", s.site_id, s.status.as_str()))
            .collect();
        let statuses: Vec<SiteStatus> = result.sites.iter().map(|s| s.status).collect();
        return beacon_error(
            entry,
            &request,
            no_count_status(&statuses),
            &format!(
                "no site answered, so there is no count ({})",
                why.join("; ")
            ),
        );
    };
    let count = total.value.max(0.0).round() as i64;
    let answered: Vec<&str> = result
        .sites
        .iter()
        .filter(|s| s.status == SiteStatus::Answered)
        .map(|s| s.site_id.as_str())
        .collect();
    HttpResponse::Ok().json(json!({
        "meta": response_meta(entry, &request),
        "responseSummary": {"exists": count > 0, "numTotalResults": count},
        "info": {
            "differentialPrivacy": "the count is the sum of the sites' differentially private counts (noise added at each site); it is not exact",
            "interval95": total.interval,
            "sitesAnswered": answered,
            "sitesMissing": result.missing,
            "historyId": result.id,
        },
        "beaconHandovers": [],
    }))
}

/// `POST /beacon/v2/individuals`: how many donors match the filters.
#[utoipa::path(
    tag = "beacon",
    security(("bearer" = []), ("session" = [])),
    request_body(content = BeaconRequest, description = "A Beacon v2 request; its `query.filters` are AND-ed."),
    responses(CountResponses)
)]
#[post("/individuals")]
pub async fn individuals(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    count(Entry::Individuals, state, req, Body::Post(&body)).await
}

/// `GET /beacon/v2/individuals`: how many donors there are.
#[utoipa::path(
    tag = "beacon",
    security(("bearer" = []), ("session" = [])),
    responses(CountResponses)
)]
#[get("/individuals")]
pub async fn individuals_get(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    count(Entry::Individuals, state, req, Body::None).await
}

/// `POST /beacon/v2/biosamples`: how many samples match the filters.
#[utoipa::path(
    tag = "beacon",
    security(("bearer" = []), ("session" = [])),
    request_body(content = BeaconRequest, description = "A Beacon v2 request; its `query.filters` are AND-ed."),
    responses(CountResponses)
)]
#[post("/biosamples")]
pub async fn biosamples(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    count(Entry::Biosamples, state, req, Body::Post(&body)).await
}

/// `GET /beacon/v2/biosamples`: how many samples there are.
#[utoipa::path(
    tag = "beacon",
    security(("bearer" = []), ("session" = [])),
    responses(CountResponses)
)]
#[get("/biosamples")]
pub async fn biosamples_get(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    count(Entry::Biosamples, state, req, Body::None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(filters: Value) -> Result<FeasibilityQuery> {
        let request: BeaconRequest =
            serde_json::from_value(json!({"query": {"filters": filters}})).unwrap();
        question(Entry::Individuals, &request)
    }

    #[test]
    fn filters_become_anded_conditions() {
        let query = q(json!([
            {"id": "ICD10:S72"},
            {"id": "NCIT:C16576"},
            {"id": "age_at_sampling", "operator": ">=", "value": "50"},
            {"id": "age_at_sampling", "operator": "<", "value": 71},
            {"id": "sample_type:StemCells"},
        ]))
        .unwrap();
        assert_eq!(query.measures, [Measure::Donors]);
        assert_eq!(
            query.to_sql(),
            "SELECT COUNT(DISTINCT donor_id) AS donors FROM samples WHERE diagnosis LIKE 'S72%' AND sex = 'Female' AND age_at_sampling >= 50 AND age_at_sampling <= 70 AND sample_type = 'StemCells'"
        );
        let exact = q(json!([{"id": "ICD10:S72.1", "includeDescendantTerms": false}])).unwrap();
        assert_eq!(
            exact.to_sql(),
            "SELECT COUNT(DISTINCT donor_id) AS donors FROM samples WHERE diagnosis = 'S72.1'"
        );
    }

    #[test]
    fn unknown_terms_and_operators_are_refused() {
        for bad in [
            json!([{"id": "HP:0000118"}]),
            json!([{"id": "sample_type:Blood"}]),
            json!([{"id": "bmi", "operator": ">", "value": "30"}]),
            json!([{"id": "age_at_sampling", "operator": "!", "value": "3"}]),
            json!([{"id": "age_at_sampling", "operator": ">", "value": "old"}]),
            json!([{"operator": ">"}]),
        ] {
            assert!(q(bad.clone()).is_err(), "{bad}");
        }
    }

    /// What would have counted everyone, or panicked, is refused.
    #[test]
    fn bodies_that_are_not_beacon_requests_are_refused() {
        for body in [
            &b"{not json"[..],
            b"",
            b"  ",
            br#"{"query": {"filterz": [{"id": "NCIT:C16576"}]}}"#,
            br#"{"qurey": {}}"#,
            br#"{"query": {"requestParameters": {"g_variant": {"referenceName": "1"}}}}"#,
            br#"{"query": {"testMode": true}}"#,
            // serde would read a list as the struct's fields in order.
            br#"{"query": {"pagination": [null, null]}}"#,
            br#"{"query": []}"#,
            br#"{"meta": []}"#,
            br#"[]"#,
            br#"{"query": {"pagination": {"skip": "x"}}}"#,
            br#"{"query": {"pagination": {"skip": -1}}}"#,
            br#"{"query": {"pagination": {"skip": 1.5}}}"#,
            br#"{"query": {"pagination": {"page": 1}}}"#,
        ] {
            let r = BeaconRequest::parse(body);
            assert!(r.is_err(), "{} was taken", String::from_utf8_lossy(body));
        }
        let ok = BeaconRequest::parse(br#"{"meta": {"apiVersion": "2.0"}, "query": {"filters": [], "pagination": {"skip": 0, "limit": 10.0}, "includeResultsetResponses": "HIT", "requestedGranularity": "count", "testMode": false}}"#)
            .unwrap();
        assert!(ok.query.filters.is_empty());
        // A filter key nobody reads is refused too.
        assert!(q(json!([{"id": "NCIT:C16576", "exclude": true}])).is_err());
    }

    #[test]
    fn ages_are_whole_years_from_0_to_150() {
        for value in [
            json!(-1),
            json!(151),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(" 50"),
            json!("050"),
            json!("5.5"),
            json!(50.5),
            json!(null),
            json!(1e300),
        ] {
            let filter = json!([{"id": "age_at_sampling", "operator": ">", "value": value}]);
            let e = q(filter).unwrap_err();
            assert!(e.to_string().contains("from 0 to 150"), "{value}: {e}");
        }
        for (op, value, sql) in [
            (">", json!(150), "age_at_sampling >= 151"),
            (">", json!(29.0), "age_at_sampling >= 30"),
            ("<", json!("0"), "age_at_sampling <= -1"),
            ("=", json!("150"), "age_at_sampling BETWEEN 150 AND 150"),
        ] {
            let filter = json!([{"id": "age_at_sampling", "operator": op, "value": value}]);
            let query = q(filter).unwrap();
            assert!(query.to_sql().contains(sql), "{}", query.to_sql());
        }
    }

    /// Each filter shape the document refuses, the endpoint refuses.
    #[test]
    fn filters_are_held_to_their_documented_shape() {
        for bad in [
            json!([[]]),
            json!(["NCIT:C16576"]),
            json!([{"id": "NCIT:C16576", "value": 3}]),
            json!([{"id": "NCIT:C16576", "includeDescendantTerms": "yes"}]),
            json!([{"id": "NCIT:C16576", "scope": 1}]),
            json!([{"id": "age_at_sampling", "operator": ">", "value": 3, "similarity": "exact"}]),
            json!([{"id": "age_at_sampling", "value": 3}]),
            json!([{"id": "age_at_sampling", "operator": 1, "value": 3}]),
            json!([{"id": "ICD10:s72"}]),
            json!([{"id": "ICD10:S72.10"}]),
            json!([{"id": "ICD10:DS721"}]),
        ] {
            assert!(q(bad.clone()).is_err(), "{bad} was taken");
        }
        q(json!([{"id": "NCIT:C16576", "scope": "individual", "similarity": "exact"}])).unwrap();
    }

    #[test]
    fn a_missing_count_is_the_callers_or_the_services_by_the_sites_statuses() {
        use SiteStatus as S;
        for (sites, want) in [
            (&[S::BudgetExhausted, S::BudgetExhausted][..], 429),
            (&[S::Refused, S::BudgetExhausted], 403),
            (&[S::WaitingForApproval, S::Refused], 409),
            (&[S::WaitingForApproval, S::Unreachable], 503),
            (&[S::TimedOut, S::BudgetExhausted], 503),
            (&[S::Failed], 503),
            (&[], 503),
        ] {
            assert_eq!(no_count_status(sites), want, "{sites:?}");
        }
    }

    #[test]
    fn every_filtering_term_is_one_the_endpoint_takes() {
        for term in filtering_terms() {
            let id = term["id"].as_str().unwrap();
            let filter = if term["type"] == "alphanumeric" {
                json!({"id": id, "operator": ">=", "value": "18"})
            } else {
                json!({"id": id})
            };
            q(json!([filter])).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }
}

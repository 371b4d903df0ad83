use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "redrive",
        description = "Durable CloudEvents and webhook delivery with exact retry policies."
    ),
    paths(
        super::topics::create,
        super::topics::list,
        super::topics::get,
        super::topics::delete,
        super::subscriptions::create,
        super::subscriptions::list,
        super::subscriptions::get,
        super::subscriptions::update,
        super::subscriptions::delete,
        super::events::publish,
        super::deliveries::list,
        super::deliveries::get,
        super::deliveries::retry,
        super::lifecycle::cancel,
        super::lifecycle::redrive,
        super::lifecycle::job,
        super::lifecycle::journal,
        super::health::pause,
        super::health::resume,
        super::health::enable,
        super::security::create_token,
        super::security::list_tokens,
        super::security::delete_token,
        super::security::get_secret,
        super::security::rotate_secret,
        super::ops::backup,
        super::apply::apply,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Every route but `/healthz` and this document needs `Authorization: Bearer`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The document as served: generated from the handlers, then completed
/// with what only the guards and parsers know (see `openapi_truth`).
pub fn document_json(limits: &crate::state::Limits) -> serde_json::Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    super::openapi_truth::apply(&mut document, limits);
    document
}

pub async fn document(
    axum::extract::State(state): axum::extract::State<super::AppState>,
) -> Json<serde_json::Value> {
    Json(document_json(&state.limits))
}

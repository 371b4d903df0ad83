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

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
